"""Benchmarks: micro (hot-path pieces, in process) and macro (servers side by side under wrk)."""
