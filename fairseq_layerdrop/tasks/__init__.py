from . import language_modeling_layerdrop, translation_layerdrop  # noqa: F401
