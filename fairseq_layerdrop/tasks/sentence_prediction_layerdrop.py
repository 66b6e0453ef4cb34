"""``sentence_prediction_layerdrop``: fairseq's ``sentence_prediction`` task plus the pruning options (the encoder).

Fine-tune a RoBERTa pruned as its pre-trained checkpoint loads (Fan et al. prune a LayerDrop RoBERTa,
then fine-tune the smaller model on each task):

    fairseq-train DATA --user-dir DIR --task sentence_prediction_layerdrop --arch roberta_layerdrop_base \
        --criterion sentence_prediction --num-classes 2 --restore-file full.pt --reset-optimizer \
        --reset-dataloader --reset-meters --prune-to 6 --prune-strategy every-other ...

The classification head (``classification_heads.NAME.*``) and the LM head are never pruned. A checkpoint
loaded to evaluate or predict (``fairseq-validate``, the hub) must have the head the task names
(``--classification-head-name``): fairseq would give a missing one random weights without a word.
"""

from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.sentence_prediction import SentencePredictionConfig, SentencePredictionTask

from ..pruning.options import PruningOptions
from .prune_on_load_task import PruneOnLoadTask


@dataclass
class SentencePredictionLayerDropConfig(SentencePredictionConfig, PruningOptions):
    pass


@register_task("sentence_prediction_layerdrop", dataclass=SentencePredictionLayerDropConfig)
class SentencePredictionLayerDropTask(PruneOnLoadTask, SentencePredictionTask):
    """Sentence classification or regression with pruning at load time (the encoder)."""

    PRUNABLE_STACKS = ("encoder",)

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if from_checkpoint:
            install_head_check(model, self.cfg.classification_head_name)
        return model


def checkpoint_heads(state_dict):
    """The names of the classification heads a RoBERTa state dict holds (``classification_heads.NAME.*``)."""
    return sorted({k.split(".")[1] for k in state_dict if k.startswith("classification_heads.")})


def install_head_check(model, name):
    """Make ``model.load_state_dict`` refuse a checkpoint that lacks the classification head ``name``."""
    upgrade = model.upgrade_state_dict

    def check_then_upgrade(state_dict):
        heads = checkpoint_heads(state_dict)
        if name not in heads:
            held = f"it has {', '.join(heads)}" if heads else \
                "it has none: fine-tune it first, fairseq-train --task sentence_prediction --restore-file ..."
            raise ValueError(f"--classification-head-name {name}: the checkpoint has no classification head {name!r} "
                             f"({held}); fairseq would classify with a randomly initialized head")
        upgrade(state_dict)

    model.upgrade_state_dict = check_then_upgrade
