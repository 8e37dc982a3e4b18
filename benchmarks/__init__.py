"""Speed and findings scripts; run each with ``python -m benchmarks.NAME``."""
