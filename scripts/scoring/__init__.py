"""The recipes' scorers (BLEU, ROUGE, perplexity from fairseq's logs) and their results table beside the
paper's numbers. Run from the repository root: ``python -m scripts.scoring.bleu gen.out``."""
