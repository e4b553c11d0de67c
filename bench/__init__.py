"""Benchmarks for copytrade: `python -m bench [--quick]` (docs/performance.md)."""
