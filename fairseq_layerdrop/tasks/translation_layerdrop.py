"""``translation_layerdrop``: fairseq's ``translation`` task plus the pruning options.

    fairseq-generate DATA --user-dir DIR --task translation_layerdrop --path ckpt.pt --decoder-layers-to-keep 0,2,4
"""

from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from ..pruning.options import PruningOptions
from .prune_on_load_task import PruneOnLoadTask


@dataclass
class TranslationLayerDropConfig(TranslationConfig, PruningOptions):
    pass


@register_task("translation_layerdrop", dataclass=TranslationLayerDropConfig)
class TranslationLayerDropTask(PruneOnLoadTask, TranslationTask):
    """Translation with pruning at load time (encoder and decoder)."""

