"""Benchmarks: timings for people, never asserted by tests.

Run one with ``python -m glucoledger.bench.<name> [n]``; it prints its numbers as JSON.
"""
