"""``translation_layerdrop``: fairseq's ``translation`` task plus the pruning options.

    fairseq-generate DATA --user-dir DIR --task translation_layerdrop --path ckpt.pt --decoder-layers-to-keep 0,2,4
"""

from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from .pruning_options import PruneOnLoadTask, PruningOptions


@dataclass
class TranslationLayerDropConfig(TranslationConfig, PruningOptions):
    pass


@register_task("translation_layerdrop", dataclass=TranslationLayerDropConfig)
class TranslationLayerDropTask(PruneOnLoadTask, TranslationTask):
    """Translation with pruning at load time (encoder and decoder)."""

    @classmethod
    def add_args(cls, parser):
        add_args_replacing_model_flags(parser, super().add_args)


def add_args_replacing_model_flags(parser, add_args):
    """Add task flags; where a model already defined a flag of the same name (fairseq's
    ``transformer`` defines ``--encoder-layers-to-keep``), the task's replaces it. fairseq-train
    parses model and task flags with one parser, and both land in the same namespace field."""
    handler = parser.conflict_handler
    parser.conflict_handler = "resolve"
    try:
        add_args(parser)
    finally:
        parser.conflict_handler = handler
