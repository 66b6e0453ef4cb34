"""``translation_layerdrop``: fairseq's ``translation`` task plus the pruning options.

    fairseq-generate DATA --user-dir DIR --task translation_layerdrop --path ckpt.pt --decoder-layers-to-keep 0,2,4
    fairseq-generate DATA --user-dir DIR --task translation_layerdrop --path ckpt.pt --beam 1 --self-speculative 2 --draft-tokens 4
"""

from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from ..decoding.options import DecodingOptions
from ..pruning.options import PruningOptions
from .decoding_task import DecodingTask
from .prune_on_load_task import PruneOnLoadTask


@dataclass
class TranslationLayerDropConfig(TranslationConfig, PruningOptions, DecodingOptions):
    pass


@register_task("translation_layerdrop", dataclass=TranslationLayerDropConfig)
class TranslationLayerDropTask(DecodingTask, PruneOnLoadTask, TranslationTask):
    """Translation with pruning at load time (encoder and decoder), early exit and self-speculative decoding."""

