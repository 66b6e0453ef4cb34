from . import roberta_layerdrop, transformer_layerdrop, transformer_lm_layerdrop  # noqa: F401
