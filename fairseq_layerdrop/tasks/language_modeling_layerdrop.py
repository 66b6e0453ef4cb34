"""``language_modeling_layerdrop``: fairseq's ``language_modeling`` task plus the pruning options.

    fairseq-eval-lm DATA --user-dir DIR --task language_modeling_layerdrop --path ckpt.pt --prune-to 8
    fairseq-interactive DATA --user-dir DIR --task language_modeling_layerdrop --path ckpt.pt --beam 1 \
        --self-speculative 3 --draft-tokens 4      # prompt continuation, one prompt a line
"""

from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask

from ..decoding.options import DecodingOptions
from ..pruning.options import PruningOptions
from .decoding_task import DecodingTask
from .prune_on_load_task import PruneOnLoadTask


@dataclass
class LanguageModelingLayerDropConfig(LanguageModelingConfig, PruningOptions, DecodingOptions):
    pass


@register_task("language_modeling_layerdrop", dataclass=LanguageModelingLayerDropConfig)
class LanguageModelingLayerDropTask(DecodingTask, PruneOnLoadTask, LanguageModelingTask):
    """Language modeling with pruning at load time (the decoder), early exit and self-speculative decoding."""

    PRUNABLE_STACKS = ("decoder",)

