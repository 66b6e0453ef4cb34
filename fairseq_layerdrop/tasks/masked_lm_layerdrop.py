"""``masked_lm_layerdrop``: fairseq's ``masked_lm`` task plus the pruning options (the encoder).

For a RoBERTa (fairseq's ``roberta`` or the plugin's ``roberta_layerdrop``), pruned as its checkpoint loads:

    fairseq-validate DATA --user-dir DIR --task masked_lm_layerdrop --path ckpt.pt --prune-to 6
    fairseq-train DATA --user-dir DIR --task masked_lm_layerdrop --arch roberta_layerdrop_base \
        --finetune-from-model full.pt --prune-to 6 ...      # continue pre-training a pruned model
"""

from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask

from ..pruning.options import PruningOptions
from .prune_on_load_task import PruneOnLoadTask


@dataclass
class MaskedLMLayerDropConfig(MaskedLMConfig, PruningOptions):
    pass


@register_task("masked_lm_layerdrop", dataclass=MaskedLMLayerDropConfig)
class MaskedLMLayerDropTask(PruneOnLoadTask, MaskedLMTask):
    """Masked language modeling with pruning at load time (the encoder)."""

    PRUNABLE_STACKS = ("encoder",)
