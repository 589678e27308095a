"""Benchmarks: ``make bench`` writes bench/results.json and bench/results.md (linked from the README)."""
