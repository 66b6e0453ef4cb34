"""In-place depth distillation: the full model on the labels, sub-networks on the labels and on its output.

The sandwich rule with in-place distillation (Yu & Huang, *Universally Slimmable Networks and Improved
Training Techniques*, ICCV 2019, arXiv 1903.05134), applied to depth: every update runs

- pass 0, the full model (every layer, no LayerDrop), trained on the labels;
- passes 1..K (``--depth-distill-passes K``), sub-networks chosen by the LayerDrop draw or from a menu of the
  depths you will deploy (``--depth-menu 2,4,6 --menu-strategy every-other``; ``modules/depth_passes.py``),
  each trained on the labels and on pass 0's output distribution::

    loss = task(full) + sum_k [ w_label * task(sub_k) + w_kl * sum_t KL(p_full || p_sub_k) ]

Flags: ``--depth-distill-label-weight`` (w_label, default 1), ``--depth-distill-kl-weight`` (w_kl, default 1),
``--depth-distill-teacher detached|attached``: with ``detached`` (the default, as Yu & Huang) the full model's
distribution is a constant target for the sub-networks, so the KL sends no gradient into pass 0's graph;
with ``attached`` it also pulls the full model towards its sub-networks. Use::

    --criterion depth_distillation_cross_entropy
    --criterion depth_distillation_label_smoothed_cross_entropy --label-smoothing 0.1

Each sub-network pass runs only its layers. Validation and inference: one full pass, the plain task loss.
Log lines (training, per token or per sentence with ``--sentence-avg``, base 2): ``loss`` and ``ppl`` are the
full model's (pass 0's task loss), in training and validation, so they compare with plain training;
``dd_objective`` is the whole training objective, ``dd_sub`` the sub-networks' task loss and ``dd_kl`` the KL
(means over the sub-network passes), ``dd_sub_layers`` the layers a sub-network pass ran (all stacks).
"""

import logging
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from fairseq.logging import metrics
from omegaconf import II

from ..compat import model_built_for_training
from ..modules.depth_passes import (
    MENU_SAMPLINGS,
    MENU_STRATEGIES,
    check_menu_sampling,
    check_menu_strategy,
    depth_pass,
    menu_entry,
    menu_kept,
    parse_depth_menu,
)
from ..modules.layer_gates import gated_stacks
from ..modules.siamese_passes import seeded_stacks
from .lr_drop_loss import SEPARATE_PASS_BACKENDS, check_weight
from .pass_log_probs import CrossEntropyOnPassLogProbs, LabelSmoothedOnPassLogProbs

logger = logging.getLogger(__name__)

TEACHERS = ("detached", "attached")
LOG_KEYS = ("dd_objective", "dd_sub", "dd_kl")
MAX_PASSES = 8


@dataclass
class DepthDistillationConfig:
    depth_distill_kl_weight: float = field(
        default=1.0, metadata={"help": "depth distillation: weight of KL(full || sub-network) of the output "
                                       "distributions, per token, >= 0"})
    depth_distill_label_weight: float = field(
        default=1.0, metadata={"help": "depth distillation: weight of each sub-network's task loss on the labels, >= 0"})
    depth_distill_passes: int = field(
        default=1, metadata={"help": f"depth distillation: sub-network passes per update besides the full one "
                                     f"(1..{MAX_PASSES})"})
    depth_distill_teacher: str = field(
        default="detached", metadata={"help": "depth distillation: 'detached' (the full model's output is a constant "
                                              "target) or 'attached' (the KL also trains the full model)"})
    depth_menu: Optional[str] = field(
        default=None, metadata={"help": "depth distillation: the depths the sub-networks take, e.g. 2,4,6, or "
                                        "ENC:DEC pairs for translation (6:3,3:3); default: the LayerDrop draw"})
    menu_strategy: str = field(
        default="every-other", metadata={"help": f"the layers a menu depth keeps: {', '.join(MENU_STRATEGIES)} "
                                                 "(as pruning with that strategy)"})
    menu_sampling: str = field(
        default="random", metadata={"help": f"{', '.join(MENU_SAMPLINGS)}: sub-network passes draw menu entries "
                                            "uniformly, or pass 1 always takes the smallest (Yu & Huang's sandwich rule)"})
    distributed_world_size: int = II("distributed_training.distributed_world_size")
    ddp_backend: str = II("distributed_training.ddp_backend")


def _check_passes(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PASSES:
        raise ValueError(f"--depth-distill-passes must be a whole number in 1..{MAX_PASSES}, got {value!r}")
    return value


def _check_teacher(value) -> str:
    if value not in TEACHERS:
        raise ValueError(f"--depth-distill-teacher must be one of {', '.join(TEACHERS)}, got {value!r}")
    return value


class DepthDistillationLoss:
    """Mixin for a fairseq criterion whose ``compute_loss`` returns ``(loss, nll_loss)``: see the module docstring."""

    def init_depth_distillation(self, depth_distill_kl_weight, depth_distill_label_weight, depth_distill_passes,
                                depth_distill_teacher, depth_menu, menu_strategy, menu_sampling,
                                distributed_world_size=1, ddp_backend="legacy_ddp"):
        self.kl_weight = check_weight(depth_distill_kl_weight, "--depth-distill-kl-weight")
        self.label_weight = check_weight(depth_distill_label_weight, "--depth-distill-label-weight")
        self.passes = _check_passes(depth_distill_passes)
        self.detach_teacher = _check_teacher(depth_distill_teacher) == "detached"
        if depth_menu is not None and not str(depth_menu).strip():
            raise ValueError("--depth-menu is empty: give the depths to train, e.g. --depth-menu 2,4,6, or leave it "
                             "out to draw sub-networks by LayerDrop")
        self.menu_text = depth_menu
        self.menu_strategy = check_menu_strategy(menu_strategy)
        self.menu_sampling = check_menu_sampling(menu_sampling)
        if self.menu_sampling == "sandwich" and depth_menu is None:
            raise ValueError("--menu-sampling sandwich takes the smallest entry of --depth-menu: give --depth-menu")
        self.distributed = (distributed_world_size or 1) > 1
        self.ddp_backend = ddp_backend
        self._checked = None
        self.menu = None
        model = model_built_for_training(getattr(self, "task", None))
        if model is not None:  # fairseq-train built it just before: refuse what cannot work, at start
            self.check_model(model)

    def check_model(self, model):
        """Refuse a model the mode cannot train, and read the menu against its stacks (once per model)."""
        if self._checked is not None and self._checked[0] is model:
            return self._checked[1]
        stacks = seeded_stacks(model)
        if not stacks:
            raise ValueError("the depth distillation criteria choose the layers of each pass, which needs the "
                             "plugin's architectures: --arch transformer_layerdrop*, transformer_lm_layerdrop* "
                             "(with --user-dir)")
        if gated_stacks(model):
            raise ValueError("--layer-gates trains its gates with --criterion gated_cross_entropy / "
                             "gated_label_smoothed_cross_entropy; the depth distillation criteria do not train "
                             "them: drop --layer-gates")
        if self.distributed and self.ddp_backend not in SEPARATE_PASS_BACKENDS:
            raise ValueError(f"depth distillation runs several forward passes of different depths before one "
                             f"backward, which --ddp-backend {self.ddp_backend} does not support: use "
                             f"--ddp-backend legacy_ddp")
        depths = {s.stack: len(s) for s in stacks}
        if self.menu_text is not None:
            self.menu = parse_depth_menu(self.menu_text, depths)
            if any(r > 0 for s in stacks for r in s.rates):
                logger.info("depth distillation: --depth-menu chooses the sub-networks; the LayerDrop rates are not "
                            "used in training")
        elif not any(r > 0 for s in stacks for r in s.rates):
            logger.warning("depth distillation without --depth-menu draws sub-networks by LayerDrop, but every "
                           "LayerDrop rate is 0: every sub-network is the full model")
        self._checked = (model, depths)
        return depths

    def sub_network(self, stacks, depths, pass_index):
        """The layers pass ``pass_index`` keeps per stack (None: its LayerDrop draw)."""
        if self.menu is None:
            return None
        first = stacks[0]
        entry = menu_entry(self.menu, self.menu_sampling, first.seed, first.num_updates, first.micro_batch,
                           pass_index)
        return menu_kept(entry, self.menu_strategy, depths)

    def forward(self, model, sample, reduce=True):
        if not (model.training and reduce):
            return super().forward(model, sample, reduce=reduce)  # one pass, every layer, the plain loss
        depths = self.check_model(model)
        stacks = seeded_stacks(model)
        plans = [{s.stack: list(range(len(s))) for s in stacks}]
        plans += [self.sub_network(stacks, depths, k) for k in range(1, self.passes + 1)]
        target = model.get_targets(sample, None)
        token_mask = target.ne(self.padding_idx)
        loss = full_loss = nll_loss = teacher = full_output = None
        sub_losses, kls, sub_layers = [], [], []
        for k, kept in enumerate(plans):
            with depth_pass(stacks, kept, k, last=k == len(plans) - 1):
                output = model(**sample["net_input"])
            if k:
                sub_layers.append(sum(len(s.last_kept) for s in stacks))
            lprobs = model.get_normalized_probs(output, log_probs=True)
            task_loss, task_nll = self.cached_loss(model, output, sample, lprobs)
            if k == 0:
                loss, full_loss, nll_loss, full_output = task_loss, task_loss, task_nll, output
                teacher = (lprobs.detach() if self.detach_teacher else lprobs).float()  # once, for every sub-pass
                continue
            kl = F.kl_div(lprobs.float(), teacher, log_target=True, reduction="none").sum(-1)
            kl = kl.masked_fill(~token_mask, 0.0).sum()
            loss = loss + self.label_weight * task_loss + self.kl_weight * kl
            sub_losses.append(task_loss.detach())
            kls.append(kl.detach())
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": full_loss.data,
            "nll_loss": nll_loss.data,
            "dd_objective": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
            "dd_steps": 1,
            "dd_sub": sum(sub_losses) / len(sub_losses),
            "dd_kl": sum(kls) / len(kls),
            "dd_sub_layers": sum(sub_layers) / len(sub_layers),
        }
        if getattr(self, "report_accuracy", False):
            n_correct, total = self.compute_accuracy(model, full_output, sample)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(total.data)
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        steps = sum(log.get("dd_steps", 0) for log in logging_outputs)
        if not steps:
            return
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs) or 1
        for key in LOG_KEYS:
            value = utils.item(sum(log.get(key, 0) for log in logging_outputs)) / sample_size
            metrics.log_scalar(key, value / math.log(2), sample_size, round=3)
        metrics.log_scalar("dd_sub_layers", sum(log.get("dd_sub_layers", 0) for log in logging_outputs) / steps,
                           steps, round=2)



@dataclass
class DepthDistillationCrossEntropyConfig(CrossEntropyCriterionConfig, DepthDistillationConfig):
    pass


@register_criterion("depth_distillation_cross_entropy", dataclass=DepthDistillationCrossEntropyConfig)
class DepthDistillationCrossEntropyCriterion(DepthDistillationLoss, CrossEntropyOnPassLogProbs, CrossEntropyCriterion):
    """fairseq's ``cross_entropy`` with in-place depth distillation (module docstring)."""

    def __init__(self, task, sentence_avg, depth_distill_kl_weight=1.0, depth_distill_label_weight=1.0,
                 depth_distill_passes=1, depth_distill_teacher="detached", depth_menu=None,
                 menu_strategy="every-other", menu_sampling="random", distributed_world_size=1,
                 ddp_backend="legacy_ddp"):
        super().__init__(task, sentence_avg)
        self.init_depth_distillation(depth_distill_kl_weight, depth_distill_label_weight, depth_distill_passes,
                                     depth_distill_teacher, depth_menu, menu_strategy, menu_sampling,
                                     distributed_world_size, ddp_backend)


@dataclass
class DepthDistillationLabelSmoothedCrossEntropyConfig(LabelSmoothedCrossEntropyCriterionConfig,
                                                       DepthDistillationConfig):
    pass


@register_criterion("depth_distillation_label_smoothed_cross_entropy",
                    dataclass=DepthDistillationLabelSmoothedCrossEntropyConfig)
class DepthDistillationLabelSmoothedCrossEntropyCriterion(DepthDistillationLoss, LabelSmoothedOnPassLogProbs,
                                                            LabelSmoothedCrossEntropyCriterion):
    """fairseq's ``label_smoothed_cross_entropy`` with in-place depth distillation (module docstring)."""

    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False,
                 depth_distill_kl_weight=1.0, depth_distill_label_weight=1.0, depth_distill_passes=1,
                 depth_distill_teacher="detached", depth_menu=None, menu_strategy="every-other",
                 menu_sampling="random", distributed_world_size=1, ddp_backend="legacy_ddp"):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        self.init_depth_distillation(depth_distill_kl_weight, depth_distill_label_weight, depth_distill_passes,
                                     depth_distill_teacher, depth_menu, menu_strategy, menu_sampling,
                                     distributed_world_size, ddp_backend)

