"""Background workers whose bodies never raise: the odds poller's per-sport loops (fixed-period workers
such as settlement and the theme warmer are ``runtime.looping.LoopingWorker`` services built in
``service.py``)."""
