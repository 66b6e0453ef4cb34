"""Benchmarks: speed and quality targets measured in one interleaved run, printed as Markdown (``common.py``
holds what they share). Run from the repository root: ``python -m scripts.bench.train``."""
