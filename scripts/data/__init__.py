"""Corpus preparation: toy corpora for tests and the demo, and the real corpora of the recipes. Run from the
repository root: ``python -m scripts.data.toy_data lm OUT_DIR``."""
