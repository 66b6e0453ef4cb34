from . import transformer_layerdrop, transformer_lm_layerdrop  # noqa: F401
