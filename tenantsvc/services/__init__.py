"""Services: orchestration in ``async def``; they never see an HTTP request."""
