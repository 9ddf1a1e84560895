"""cnnkit's benchmark suite against PyTorch on the CPU: ``python -m benchmarks.run`` (see README.md)."""
