"""What serves the repository (not installed): benchmarks (``scripts.bench``), corpus preparation for the
recipes (``scripts.data``), the recipes' scorers (``scripts.scoring``) and the demo. Run from the repository
root as modules, e.g. ``python -m scripts.bench.train``; the tools a user runs are ``fairseq-layerdrop``."""
