"""Benchmarks: each prints ratios against a baseline run in the same process. Run them from the
repository root as modules, e.g. ``python -m bench.probe_overhead``."""
