"""The early-exit criteria: fairseq's cross-entropy losses, also after intermediate decoder layers (LayerSkip).

LayerSkip (Elhoushi et al., ACL 2024, arXiv 2404.16710) trains the model's own output head after every
decoder layer, so that the first E layers alone predict well (early exit, and the drafts of
self-speculative decoding). For a ``transformer_lm_layerdrop*`` or ``transformer_layerdrop*`` model, use
the early-exit twin of your loss::

    --criterion early_exit_cross_entropy  [--early-exit-scale 1.0]
    --criterion early_exit_label_smoothed_cross_entropy --label-smoothing 0.1
    [--early-exit-curriculum rotational [--early-exit-rotation-interval 2] | gradual --early-exit-gradual-updates T]

The head of exit l is the decoder's own tail: its final layer norm where it has one (pre-norm models),
``project_out_dim`` where it has one, and the shared output projection, applied to the output of layer l.
The exits' losses (the base criterion's loss, label smoothing included) are added to the final layer's
with the normalized weights of ``criterions/early_exit_weights.py``. Exits are on when the curriculum
switches them on (a function of the update number) and their layer ran: a layer dropped by LayerDrop in
a step has no exit that step (its weight is 0 and the rest are renormalized), and when the top layer is
dropped, the top layer that ran gives the model's output, which counts once, as the final layer's term.

Logs: ``loss`` (and ``nll_loss``) are the final layer's, as with the plain criterion, in training and in
validation, so they compare with plain training; ``exit_E`` is the loss of the exit after the first E
layers (the head on layer E of L; in validation every exit, in training the exits that were on);
``exit_objective`` is the weighted sum that training minimizes. All per token (or sentence), base 2.
"""

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.criterions import register_criterion
from fairseq.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from fairseq.logging import metrics

from ..compat import model_built_for_training
from ..modules.layer_drop import SeededLayerDropList
from .early_exit_weights import CURRICULA, check_early_exit_options, exit_enabled, exit_weights

OBJECTIVE = "exit_objective"


@dataclass
class EarlyExitLossConfig:
    early_exit_scale: float = field(
        default=1.0, metadata={"help": "e_scale of LayerSkip's early-exit loss: the weight of the intermediate exits "
                                       "against the final layer (0: plain cross-entropy); see docs/early_exit.md"})
    early_exit_curriculum: str = field(
        default="none", metadata={"help": f"which exits train at update t: {', '.join(CURRICULA)} (LayerSkip's curricula)"})
    early_exit_rotation_interval: Optional[int] = field(
        default=None, metadata={"help": "rotational curriculum: exit l is on iff (l - t) mod R == 0 (default R = 2)"})
    early_exit_gradual_updates: Optional[int] = field(
        default=None, metadata={"help": "gradual curriculum: exits switch on from the top down, the last at update T"})


def _exit_logits(decoder, x):
    """The decoder's output head on an inner state ``x`` (T x B x C): final layer norm, projection, output layer."""
    if decoder.layer_norm is not None:
        x = decoder.layer_norm(x)
    x = x.transpose(0, 1)
    if decoder.project_out_dim is not None:
        x = decoder.project_out_dim(x)
    return decoder.output_layer(x)


class EarlyExitLoss:
    """Mixin for a fairseq criterion: adds the early-exit terms and logs each exit's loss."""

    def init_early_exit(self, early_exit_scale, early_exit_curriculum, early_exit_rotation_interval,
                        early_exit_gradual_updates):
        self.rotation_interval, self.gradual_updates = check_early_exit_options(
            early_exit_scale, early_exit_curriculum, early_exit_rotation_interval, early_exit_gradual_updates)
        self.e_scale, self.curriculum = float(early_exit_scale), early_exit_curriculum
        model = model_built_for_training(getattr(self, "task", None))
        if model is not None:  # fairseq-train built it just before: refuse a model without exits, at start
            self.decoder_of(model)

    @staticmethod
    def decoder_of(model):
        decoder = getattr(model, "decoder", None)
        if decoder is None or not isinstance(getattr(decoder, "layers", None), SeededLayerDropList):
            raise ValueError("the early-exit criteria need a decoder of this plugin: --arch transformer_lm_layerdrop* "
                             "or transformer_layerdrop* (with --user-dir)")
        if getattr(decoder, "adaptive_softmax", None) is not None:
            raise ValueError("the early-exit criteria use the shared output projection: drop --adaptive-softmax-cutoff")
        if len(decoder.layers) == 0:
            raise ValueError("--decoder-layers 0: the early-exit criteria weigh the loss after each decoder layer, "
                             "and this decoder has none; use at least 1 (with 1 there is no intermediate exit) or "
                             "a plain criterion")
        return decoder

    def forward(self, model, sample, reduce=True):
        decoder = self.decoder_of(model)
        outputs = []
        hook = model.register_forward_hook(lambda module, inputs, output: outputs.append(output))
        try:
            loss, sample_size, logging_output = super().forward(model, sample, reduce=reduce)
        finally:
            hook.remove()
        if not reduce:
            return loss, sample_size, logging_output
        extra = outputs[-1][1]
        layers, inner = decoder.layers, extra["inner_states"]
        num_layers = len(layers)
        ran = list(layers.last_kept) if model.training else list(range(num_layers))
        if len(inner) != len(ran) + 1:
            raise RuntimeError(f"early exit: {len(inner) - 1} decoder states for {len(ran)} layers that ran")
        update = layers.num_updates
        # the top layer that ran gives the model's output: it is the final layer's term, not an exit
        candidates = [(layer, inner[j + 1]) for j, layer in enumerate(ran[:-1])]
        if model.training:
            candidates = [(layer, x) for layer, x in candidates if exit_enabled(
                layer, num_layers, update, self.curriculum, self.rotation_interval, self.gradual_updates)]
        weights = exit_weights(num_layers, [layer for layer, _ in candidates], self.e_scale)
        objective = loss if self.e_scale == 0 else weights[-1] * loss
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.e_scale > 0):
            exit_losses = {}
            for (layer, x), weight in zip(candidates, weights):
                exit_loss = self.compute_loss(model, (_exit_logits(decoder, x), extra), sample, reduce=True)[0]
                exit_losses[layer + 1] = exit_loss.detach()
                if self.e_scale > 0:
                    objective = objective + weight * exit_loss
        for depth in range(1, num_layers):
            present = depth in exit_losses
            logging_output[f"exit_{depth}"] = exit_losses[depth] if present else 0.0
            logging_output[f"exit_{depth}_n"] = sample_size if present else 0
        logging_output[OBJECTIVE] = objective.detach()
        return objective, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        if sample_size and any(OBJECTIVE in log for log in logging_outputs):
            metrics.log_scalar(OBJECTIVE, sum(log.get(OBJECTIVE, 0) for log in logging_outputs) / sample_size
                               / math.log(2), sample_size, priority=100, round=3)
        depths = sorted({int(k[len("exit_"):-len("_n")]) for log in logging_outputs for k in log
                         if k.startswith("exit_") and k.endswith("_n")})
        for depth in depths:
            n = sum(log.get(f"exit_{depth}_n", 0) for log in logging_outputs)
            if n:
                total = sum(log.get(f"exit_{depth}", 0) for log in logging_outputs)
                metrics.log_scalar(f"exit_{depth}", total / n / math.log(2), n, priority=100 + depth, round=3)


@dataclass
class EarlyExitCrossEntropyConfig(CrossEntropyCriterionConfig, EarlyExitLossConfig):
    pass


@register_criterion("early_exit_cross_entropy", dataclass=EarlyExitCrossEntropyConfig)
class EarlyExitCrossEntropyCriterion(EarlyExitLoss, CrossEntropyCriterion):
    """fairseq's ``cross_entropy`` plus LayerSkip's early-exit loss (see the module docstring)."""

    def __init__(self, task, sentence_avg, early_exit_scale=1.0, early_exit_curriculum="none",
                 early_exit_rotation_interval=None, early_exit_gradual_updates=None):
        super().__init__(task, sentence_avg)
        self.init_early_exit(early_exit_scale, early_exit_curriculum, early_exit_rotation_interval,
                             early_exit_gradual_updates)


@dataclass
class EarlyExitLabelSmoothedCrossEntropyConfig(LabelSmoothedCrossEntropyCriterionConfig, EarlyExitLossConfig):
    pass


@register_criterion("early_exit_label_smoothed_cross_entropy", dataclass=EarlyExitLabelSmoothedCrossEntropyConfig)
class EarlyExitLabelSmoothedCrossEntropyCriterion(EarlyExitLoss, LabelSmoothedCrossEntropyCriterion):
    """fairseq's ``label_smoothed_cross_entropy`` plus LayerSkip's early-exit loss (see the module docstring)."""

    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False,
                 early_exit_scale=1.0, early_exit_curriculum="none", early_exit_rotation_interval=None,
                 early_exit_gradual_updates=None):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        self.init_early_exit(early_exit_scale, early_exit_curriculum, early_exit_rotation_interval,
                             early_exit_gradual_updates)
