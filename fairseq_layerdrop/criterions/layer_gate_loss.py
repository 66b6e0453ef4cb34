"""The gating criterion: fairseq's cross-entropy losses plus what trains learned layer gates.

For a model built with ``--layer-gates`` (``modules/layer_gates.py``, Fan et al. arXiv 1909.11556
"data-driven pruning"), use the gated twin of your loss; everything else stays as it was::

    --criterion gated_cross_entropy                                   # instead of cross_entropy
    --criterion gated_label_smoothed_cross_entropy --label-smoothing 0.1

Budget: the gates' softmax normalization keeps the mean drop rate of each stack at its target p
(expected kept layers N * (1 - p)) exactly, so no penalty term is needed for it.

Gradient: a dropped layer does not run, so nothing flows from the loss to its gate along the
network. We use the score-function (REINFORCE) estimator: the criterion adds

    gate_weight * sample_size * (loss_per_token - baseline) * log P(sampled mask)

whose gradient (after fairseq divides by sample_size) is an unbiased estimate of d E[loss] / d gates,
with no extra forward or backward (a straight-through or relaxed-Bernoulli estimator would have to
run, or partly run, the dropped layers, which is what LayerDrop saves). The baseline, an exponential
moving average of the per-token loss (``--gate-baseline-decay``), only reduces variance. The logged
``loss`` is the task loss alone. Per-layer keep probabilities appear in fairseq's log lines as
``enc_keep_0 ...`` and ``dec_keep_0 ...``.
"""

from dataclasses import dataclass, field

from fairseq.criterions import register_criterion
from fairseq.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from fairseq.logging import metrics

from ..compat import model_built_for_training
from ..modules.layer_gates import gated_stacks

GATE_DRAWS = "gate_draws"


@dataclass
class LayerGateLossConfig:
    gate_weight: float = field(
        default=0.1, metadata={"help": "weight of the gates' score-function term (with Adam it hardly changes the gates' steps;"
                                       " small, so that the term hardly enters --clip-norm)"})
    gate_baseline_decay: float = field(
        default=0.9, metadata={"help": "decay of the moving-average loss baseline of the gates' estimator, in [0, 1)"}
    )


class LayerGateLoss:
    """Mixin for a fairseq criterion: adds the gates' score-function term and logs keep probabilities."""

    trains_layer_gates = True  # read by the models' start-of-training check (modules/layer_gates.py)

    def init_gates(self, gate_weight, gate_baseline_decay):
        if not 0.0 <= gate_baseline_decay < 1.0:
            raise ValueError(f"--gate-baseline-decay must be in [0, 1), got {gate_baseline_decay}")
        if not gate_weight >= 0.0:
            raise ValueError(f"--gate-weight must be 0 or more (0 freezes the gates), got {gate_weight}")
        self.gate_weight, self.gate_baseline_decay = float(gate_weight), float(gate_baseline_decay)
        self.baseline = None
        self._stacks = (None, [])
        model = model_built_for_training(getattr(self, "task", None))
        if model is not None and not gated_stacks(model):  # fairseq's own architectures: refused at start
            raise ValueError(
                f"--criterion {self.criterion_name} trains learned layer gates, which this model "
                f"({type(model).__name__}) does not have: train one of the plugin's architectures with "
                f"--layer-gates (e.g. --arch transformer_lm_layerdrop), or use --criterion {self.plain_name}")

    def stacks(self, model):
        if self._stacks[0] is not model:
            stacks = gated_stacks(model)
            if not stacks:
                raise ValueError("the gated criteria train learned layer gates: build the model with --layer-gates "
                                 "(or use the plain criterion)")
            self._stacks = (model, stacks)
        return self._stacks[1]

    def forward(self, model, sample, reduce=True):
        loss, sample_size, logging_output = super().forward(model, sample, reduce=reduce)
        stacks = self.stacks(model)
        log_probs = [lp for lp in (stack.take_log_prob() for stack in stacks) if lp is not None]
        if model.training and reduce and log_probs and sample_size > 0:
            per_token = loss.detach() / sample_size
            if self.baseline is None:
                self.baseline = per_token
            gate_term = self.gate_weight * sample_size * (per_token - self.baseline) * sum(log_probs)
            self.baseline = self.gate_baseline_decay * self.baseline + (1 - self.gate_baseline_decay) * per_token
            loss = loss + gate_term
        for stack in stacks:
            for i, keep in enumerate(stack.keep_probabilities().tolist()):
                logging_output[f"{stack.stack[:3]}_keep_{i}"] = keep
        logging_output[GATE_DRAWS] = 1
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        draws = sum(log.get(GATE_DRAWS, 0) for log in logging_outputs)
        if not draws:
            return
        keys = sorted({k for log in logging_outputs for k in log if "_keep_" in k},
                      key=lambda k: (k.split("_keep_")[0] != "enc", int(k.rsplit("_", 1)[1])))
        for key in keys:
            metrics.log_scalar(key, sum(log.get(key, 0) for log in logging_outputs) / draws, draws, round=3)


@dataclass
class GatedCrossEntropyConfig(CrossEntropyCriterionConfig, LayerGateLossConfig):
    pass


@register_criterion("gated_cross_entropy", dataclass=GatedCrossEntropyConfig)
class GatedCrossEntropyCriterion(LayerGateLoss, CrossEntropyCriterion):
    """fairseq's ``cross_entropy`` plus the layer gates' estimator (see the module docstring)."""

    criterion_name, plain_name = "gated_cross_entropy", "cross_entropy"

    def __init__(self, task, sentence_avg, gate_weight=0.1, gate_baseline_decay=0.9):
        super().__init__(task, sentence_avg)
        self.init_gates(gate_weight, gate_baseline_decay)


@dataclass
class GatedLabelSmoothedCrossEntropyConfig(LabelSmoothedCrossEntropyCriterionConfig, LayerGateLossConfig):
    pass


@register_criterion("gated_label_smoothed_cross_entropy", dataclass=GatedLabelSmoothedCrossEntropyConfig)
class GatedLabelSmoothedCrossEntropyCriterion(LayerGateLoss, LabelSmoothedCrossEntropyCriterion):
    """fairseq's ``label_smoothed_cross_entropy`` plus the layer gates' estimator (see the module docstring)."""

    criterion_name, plain_name = "gated_label_smoothed_cross_entropy", "label_smoothed_cross_entropy"

    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False,
                 gate_weight=0.1, gate_baseline_decay=0.9):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        self.init_gates(gate_weight, gate_baseline_decay)
