"""Offline tools: dataset preparation, training, evaluation, export and benchmarks."""
