from . import language_modeling_layerdrop, masked_lm_layerdrop, sentence_prediction_layerdrop  # noqa: F401
from . import translation_layerdrop  # noqa: F401
