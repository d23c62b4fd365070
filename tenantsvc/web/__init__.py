"""HTTP layer: thin routes (parse → one service call → render) and the root resource that frames every request."""
