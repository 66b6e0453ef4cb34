"""``language_modeling_layerdrop``: fairseq's ``language_modeling`` task plus the pruning options.

    fairseq-eval-lm DATA --user-dir DIR --task language_modeling_layerdrop --path ckpt.pt --prune-to 8
"""

from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask

from ..pruning.options import PruningOptions
from .prune_on_load_task import PruneOnLoadTask


@dataclass
class LanguageModelingLayerDropConfig(LanguageModelingConfig, PruningOptions):
    pass


@register_task("language_modeling_layerdrop", dataclass=LanguageModelingLayerDropConfig)
class LanguageModelingLayerDropTask(PruneOnLoadTask, LanguageModelingTask):
    """Language modeling with pruning at load time (the decoder)."""

    PRUNABLE_STACKS = ("decoder",)

