"""Benchmarks: measuring functions for later use by a CLI or CI; not imported by the node."""
