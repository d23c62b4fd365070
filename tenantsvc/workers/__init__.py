"""Background workers: Services wrapping LoopingCalls whose bodies never raise."""
