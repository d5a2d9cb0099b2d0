"""Benchmark tasks: the registry (registry.py), loaders per task family, user tasks."""
