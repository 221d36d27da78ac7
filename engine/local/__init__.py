"""The in-process backend: the engine, its worker thread, batching, the analyst and companion, caches, sampling."""
