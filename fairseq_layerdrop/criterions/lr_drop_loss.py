"""LR-Drop criteria: fairseq's cross-entropy losses on two sub-models of one batch, made to agree layer by layer.

LR-Drop (Ni et al., "Layer-wise Regularized Dropout for Neural Language Models", LREC-COLING 2024,
arXiv 2402.16361) generalizes R-Drop (Liang et al., NeurIPS 2021, arXiv 2106.14448; fairseq's
``label_smoothed_cross_entropy_with_rdrop``): every sample passes through two sub-models sampled by
dropout, and besides the task loss of both passes the two are made to agree in their output
distributions, their hidden states and their attention matrices. Here the sub-models also differ in
depth: each pass draws its own LayerDrop layers (``modules/siamese_passes.py``). Use::

    --criterion lr_drop_cross_entropy                                    # instead of cross_entropy
    --criterion lr_drop_label_smoothed_cross_entropy --label-smoothing 0.1
        --lr-drop-output-weight 1 --lr-drop-hidden-weight 0 --lr-drop-attention-weight 0

Training loss (a sum over non-padding target tokens, divided by the sample size by fairseq, as R-Drop's):

    task(pass 0) + task(pass 1)
    + w_out  * sum_t  (KL(p0 || p1) + KL(p1 || p0)) / 2                  (R-Drop's term, exactly)
    + w_hid  * mean_l sum_t mean_c (h0_l - h1_l)^2                         (residual stream after slot l)
    + w_attn * mean_b sum_t mean_heads (KL(a0 || a1) + KL(a1 || a0)) / 2   (each attention row)

The paper's exact distances and weights are not public in a form we could read (docs/lr_drop.md):
these are our choices. Slot l's stream is compared wherever layer l ran in at least one pass (in
the other pass the stream passes through slot l unchanged, so the term pulls the sub-model without
layer l towards the one with it). Attention blocks (``b``: self-attention, and encoder attention in a
decoder, per layer) are compared only where the block ran in both passes. Validation and inference:
one pass, every layer, the plain task loss. Log lines: ``lrd_output``, ``lrd_hidden``, ``lrd_attention``
(divided by the sample size, as ``loss`` and fairseq's ``rdrop_kl_loss``: per token, per sentence with
``--sentence-avg``; the KLs in bits); ``loss`` is the whole training loss. Weights: 0 to ``MAX_WEIGHT``.
"""

import math
import weakref
from dataclasses import dataclass, field

import torch
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
from ..modules.layer_gates import gated_stacks
from ..modules.siamese_passes import siamese_passes, seeded_stacks
from .pass_log_probs import CrossEntropyOnPassLogProbs, LabelSmoothedOnPassLogProbs

TERMS = ("output", "hidden", "attention")
LOG_KEYS = {term: f"lrd_{term}" for term in TERMS}
SEPARATE_PASS_BACKENDS = ("legacy_ddp", "no_c10d")


@dataclass
class LRDropLossConfig:
    lr_drop_output_weight: float = field(
        default=1.0, metadata={"help": "LR-Drop: weight of the symmetric KL of the two passes' output distributions "
                                       "(R-Drop's alpha), >= 0"})
    lr_drop_hidden_weight: float = field(
        default=0.0, metadata={"help": "LR-Drop: weight of the mean squared difference of the two passes' residual "
                                       "streams after each layer slot (needs the plugin's architectures), >= 0"})
    lr_drop_attention_weight: float = field(
        default=0.0, metadata={"help": "LR-Drop: weight of the symmetric KL of the two passes' attention "
                                       "probabilities, per layer and head (needs the plugin's architectures), >= 0"})
    distributed_world_size: int = II("distributed_training.distributed_world_size")
    ddp_backend: str = II("distributed_training.ddp_backend")


# The largest weight of a loss term. Each term is added to a task loss of weight 1 in float32, which resolves
# about 2^-24 = 6e-8 of a sum: far above 1e6 the task loss (and the gradient it gives) is lost in the rounding
# of the total, and from about 1e30 the gradients overflow (fairseq-train then stops with FloatingPointError
# after the data is read). R-Drop's alpha is 0.1 to 5; LR-Drop's layer weights are of the same order.
MAX_WEIGHT = 1e6


def check_weight(value, flag: str) -> float:
    """``value`` as a finite weight in [0, MAX_WEIGHT], else an error naming the flag."""
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be a number >= 0 (the weight of an LR-Drop term), got {value!r}") from None
    if not (math.isfinite(weight) and weight >= 0.0):
        raise ValueError(f"{flag} must be a finite number >= 0 (the weight of an LR-Drop term), got {value!r}")
    if weight > MAX_WEIGHT:
        raise ValueError(f"{flag} must be at most {MAX_WEIGHT:g}, got {value!r}: the loss adds each term to a task "
                         "loss of weight 1 in float32, which keeps about 7 significant digits, so a larger weight "
                         "drowns the task loss in rounding, and a huge one overflows the gradients")
    return weight


CHUNK_ELEMENTS = 1 << 16  # rows per chunk: about 256 KiB of float32 per temporary, which stays in cache


def _row_chunks(rows: int, width: int):
    step = max(1, CHUNK_ELEMENTS // max(width, 1))
    return ((start, min(start + step, rows)) for start in range(0, rows, step))


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """0.5 * sum_v (p - q)(log p - log q) of every row of two N x V tensors, a chunk of rows at a time (the
    vocabulary-sized temporaries stay in cache instead of making N x V round trips through memory)."""
    out = log_p.new_empty(log_p.size(0))
    for start, end in _row_chunks(*log_p.shape):
        a, b = log_p[start:end], log_q[start:end]
        out[start:end] = torch.linalg.vecdot(a.exp().sub_(b.exp()), a - b)
    return out.mul_(0.5)


def _kl_rows_backward(log_p, log_q, grad, grad_p, grad_q):
    """Write the gradients of ``_kl_rows`` into ``grad_p`` / ``grad_q`` (N x V, or None), chunk by chunk:
    d/dlog p = p (log p - log q) + (p - q), d/dlog q = -(q (log p - log q) + (p - q)), times grad / 2."""
    half = 0.5 * grad.unsqueeze(-1)
    for start, end in _row_chunks(*log_p.shape):
        a, b, h = log_p[start:end], log_q[start:end], half[start:end]
        p, q, log_ratio = a.exp(), b.exp(), a - b
        diff = p - q
        if grad_p is not None:
            torch.mul(p, log_ratio, out=grad_p[start:end]).add_(diff).mul_(h)
        if grad_q is not None:
            torch.mul(q, log_ratio, out=grad_q[start:end]).add_(diff).mul_(-h)


class _SymmetricKL(torch.autograd.Function):
    """(KL(p || q) + KL(q || p)) / 2 over the last dimension, from log-probabilities, keeping for backward only
    the two inputs (which log-softmax keeps anyway) and recomputing p and q there, a chunk of rows at a time."""

    @staticmethod
    def forward(ctx, log_p, log_q):
        ctx.save_for_backward(log_p, log_q)
        width = log_p.size(-1)
        return _kl_rows(log_p.reshape(-1, width), log_q.reshape(-1, width)).view(log_p.shape[:-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        log_p, log_q = ctx.saved_tensors
        width = log_p.size(-1)
        grad_p = torch.empty_like(log_p, memory_format=torch.contiguous_format) if ctx.needs_input_grad[0] else None
        grad_q = torch.empty_like(log_q, memory_format=torch.contiguous_format) if ctx.needs_input_grad[1] else None
        _kl_rows_backward(log_p.reshape(-1, width), log_q.reshape(-1, width), grad.reshape(-1),
                          None if grad_p is None else grad_p.view(-1, width),
                          None if grad_q is None else grad_q.view(-1, width))
        return grad_p, grad_q


class _SymmetricKLOfHalves(torch.autograd.Function):
    """``_SymmetricKL`` of the two halves (dim 0) of one tensor, the output of a forward over the batch written
    twice: the gradient is written into one tensor of the input's shape, so that no split of the
    vocabulary-sized log-probabilities has to be concatenated back in backward."""

    @staticmethod
    def forward(ctx, both):
        ctx.save_for_backward(both)
        log_p, log_q = both.chunk(2, dim=0)
        width = both.size(-1)
        return _kl_rows(log_p.reshape(-1, width), log_q.reshape(-1, width)).view(log_p.shape[:-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (both,) = ctx.saved_tensors
        width = both.size(-1)
        log_p, log_q = (h.reshape(-1, width) for h in both.chunk(2, dim=0))
        grad_both = torch.empty(both.shape, dtype=both.dtype, device=both.device)
        grad_p, grad_q = (g.view(-1, width) for g in grad_both.chunk(2, dim=0))
        _kl_rows_backward(log_p, log_q, grad.reshape(-1), grad_p, grad_q)
        return grad_both


def symmetric_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """(KL(p || q) + KL(q || p)) / 2 over the last dimension: 0.5 * sum (p - q)(log p - log q)."""
    log_p, log_q = torch.broadcast_tensors(log_p, log_q)
    return _SymmetricKL.apply(log_p, log_q)


def symmetric_kl_of_halves(both: torch.Tensor) -> torch.Tensor:
    """``symmetric_kl`` of the first and second half (dim 0) of ``both``."""
    if both.size(0) % 2:
        raise ValueError(f"symmetric_kl_of_halves needs an even first dimension, got {tuple(both.shape)}")
    return _SymmetricKLOfHalves.apply(both)


def _half(net_output, half: int):
    """Pass ``half``'s part of a forward over the batch written twice (logits split on the batch)."""
    return (net_output[0].chunk(2, dim=0)[half],) + tuple(net_output[1:])


class LRDropLoss:
    """Mixin for a fairseq criterion whose ``compute_loss`` returns ``(loss, nll_loss)``: see the module docstring."""

    def init_lr_drop(self, lr_drop_output_weight, lr_drop_hidden_weight, lr_drop_attention_weight,
                     distributed_world_size=1, ddp_backend="legacy_ddp"):
        self.weights = {
            "output": check_weight(lr_drop_output_weight, "--lr-drop-output-weight"),
            "hidden": check_weight(lr_drop_hidden_weight, "--lr-drop-hidden-weight"),
            "attention": check_weight(lr_drop_attention_weight, "--lr-drop-attention-weight"),
        }
        self.distributed = (distributed_world_size or 1) > 1
        self.ddp_backend = ddp_backend
        self._checked = None
        model = model_built_for_training(getattr(self, "task", None))
        if model is not None:  # fairseq-train built it just before: refuse what LR-Drop cannot do, at start
            self.check_model(model)

    def check_model(self, model):
        """Refuse what LR-Drop cannot do with this model (when fairseq-train builds the criterion; again at the
        first training step, for a criterion built elsewhere)."""
        if self._checked is not None and self._checked() is model:
            return
        if gated_stacks(model):
            raise ValueError("--layer-gates trains its gates with --criterion gated_cross_entropy / "
                             "gated_label_smoothed_cross_entropy; the LR-Drop criteria do not train them: "
                             "drop --layer-gates or use a gated criterion")
        stacks = seeded_stacks(model)
        layer_flags = [f"--lr-drop-{t}-weight" for t in ("hidden", "attention") if self.weights[t] > 0]
        if layer_flags and not stacks:
            raise ValueError(f"{' and '.join(layer_flags)} compare the two passes layer by layer, which needs the "
                             "plugin's architectures (--arch transformer_layerdrop, transformer_lm_layerdrop and "
                             "their variants); fairseq's own architectures get the output term only "
                             "(--lr-drop-output-weight)")
        dropping = any(r > 0 for s in stacks for r in s.rates)
        if dropping and self.distributed and self.ddp_backend not in SEPARATE_PASS_BACKENDS:
            raise ValueError(f"LR-Drop with LayerDrop runs two forward passes before one backward, which "
                             f"--ddp-backend {self.ddp_backend} does not support: use --ddp-backend legacy_ddp")
        # a weak reference: a module attribute would register the model as the criterion's submodule (its
        # parameters then reach the optimizer twice, and checkpoints store them again under "criterion")
        self._checked = weakref.ref(model)

    def forward(self, model, sample, reduce=True):
        if not (model.training and reduce):
            return super().forward(model, sample, reduce=reduce)  # one pass, every layer, the plain loss
        self.check_model(model)
        with siamese_passes(model, record_attention=self.weights["attention"] > 0) as recorder:
            if not recorder.stacks or recorder.same_draws():
                recorder.run_both()  # as fairseq's R-Drop: one forward over the batch written twice
                net_input = {k: torch.cat([v, v.clone()], dim=0) if torch.is_tensor(v) else v
                             for k, v in sample["net_input"].items()}
                both = model(**net_input)
                recorder.split()
                outputs = None
            else:
                both, outputs = None, []
                for k in (0, 1):
                    recorder.run_pass(k, last=k == 1)
                    outputs.append(model(**sample["net_input"]))
        # the log-probabilities, computed once for the task loss and the output term
        if both is not None:  # both passes' task losses as one loss over the batch written twice, as R-Drop's
            lprobs = model.get_normalized_probs(both, log_probs=True)
            doubled = dict(sample, target=torch.cat([sample["target"], sample["target"]], dim=0))
            loss, nll_loss = self.cached_loss(model, both, doubled, lprobs)
            output_kl = symmetric_kl_of_halves(lprobs.float()) if self.weights["output"] > 0 else None
        else:
            lprobs = [model.get_normalized_probs(out, log_probs=True) for out in outputs]
            (loss0, nll0), (loss1, nll1) = (self.cached_loss(model, out, sample, lp)
                                            for out, lp in zip(outputs, lprobs))
            loss, nll_loss = loss0 + loss1, nll0 + nll1
            output_kl = symmetric_kl(lprobs[0].float(), lprobs[1].float()) if self.weights["output"] > 0 else None
        terms = self.consistency_terms(sample, output_kl, recorder, zero=loss.new_zeros(()).float())
        for term, value in terms.items():
            loss = loss + self.weights[term] * value
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
            "lrd_steps": 1,
        }
        logging_output.update({LOG_KEYS[term]: value.data for term, value in terms.items()})
        if getattr(self, "report_accuracy", False):
            n_correct, total = self.compute_accuracy(model, _half(both, 0) if both is not None else outputs[0], sample)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(total.data)
        return loss, sample_size, logging_output

    def consistency_terms(self, sample, output_kl, recorder, zero):
        """The weighted terms' unweighted values (sums over tokens), for the terms whose weight is above 0;
        ``output_kl``: the symmetric KL of the two passes' output distributions per token (B x T)."""
        target = sample["target"]
        token_mask = target.ne(self.padding_idx)  # B x T
        src_tokens = sample["net_input"].get("src_tokens")
        masks = {"decoder": token_mask}
        if src_tokens is not None and src_tokens.dim() == 2:
            masks["encoder"] = src_tokens.ne(self.padding_idx)
        terms = {}
        if output_kl is not None:
            terms["output"] = output_kl.masked_fill(~token_mask, 0.0).sum()
        if self.weights["hidden"] > 0:
            values = []
            for stack, streams in recorder.streams.get(0, {}).items():
                ran0, ran1 = recorder.ran[0][stack], recorder.ran[1][stack]
                other = recorder.streams[1][stack]
                mask = masks.get(stack, token_mask).t()  # T x B, as the streams
                for slot, h0 in streams.items():
                    if ran0[slot] or ran1[slot]:
                        diff = (h0.float() - other[slot].float()).pow(2).mean(-1)
                        values.append(diff.masked_fill(~mask, 0.0).sum())
            terms["hidden"] = torch.stack(values).mean() if values else zero
        if self.weights["attention"] > 0:
            values = []
            for stack, blocks in recorder.attention.get(0, {}).items():
                other = recorder.attention.get(1, {}).get(stack, {})
                mask = masks.get(stack, token_mask)  # B x T (query positions)
                for key, a0 in blocks.items():
                    if key in other:
                        kl = symmetric_kl(a0, other[key]).mean(1)  # B x T
                        values.append(kl.masked_fill(~mask, 0.0).sum())
            terms["attention"] = torch.stack(values).mean() if values else zero
        return terms

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        if not sum(log.get("lrd_steps", 0) for log in logging_outputs):
            return
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs) or 1
        for term, key in LOG_KEYS.items():
            if any(key in log for log in logging_outputs):
                value = utils.item(sum(log.get(key, 0) for log in logging_outputs)) / sample_size
                metrics.log_scalar(key, value / math.log(2) if term != "hidden" else value, sample_size)


@dataclass
class LRDropCrossEntropyConfig(CrossEntropyCriterionConfig, LRDropLossConfig):
    pass


@register_criterion("lr_drop_cross_entropy", dataclass=LRDropCrossEntropyConfig)
class LRDropCrossEntropyCriterion(LRDropLoss, CrossEntropyOnPassLogProbs, CrossEntropyCriterion):
    """fairseq's ``cross_entropy`` on two sub-models, with LR-Drop's consistency terms (module docstring)."""

    def __init__(self, task, sentence_avg, lr_drop_output_weight=1.0, lr_drop_hidden_weight=0.0,
                 lr_drop_attention_weight=0.0, distributed_world_size=1, ddp_backend="legacy_ddp"):
        super().__init__(task, sentence_avg)
        self.init_lr_drop(lr_drop_output_weight, lr_drop_hidden_weight, lr_drop_attention_weight,
                          distributed_world_size, ddp_backend)


@dataclass
class LRDropLabelSmoothedCrossEntropyConfig(LabelSmoothedCrossEntropyCriterionConfig, LRDropLossConfig):
    pass


@register_criterion("lr_drop_label_smoothed_cross_entropy", dataclass=LRDropLabelSmoothedCrossEntropyConfig)
class LRDropLabelSmoothedCrossEntropyCriterion(LRDropLoss, LabelSmoothedOnPassLogProbs,
                                                 LabelSmoothedCrossEntropyCriterion):
    """fairseq's ``label_smoothed_cross_entropy`` on two sub-models, with LR-Drop's terms (module docstring)."""

    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False,
                 lr_drop_output_weight=1.0, lr_drop_hidden_weight=0.0, lr_drop_attention_weight=0.0,
                 distributed_world_size=1, ddp_backend="legacy_ddp"):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        self.init_lr_drop(lr_drop_output_weight, lr_drop_hidden_weight, lr_drop_attention_weight,
                          distributed_world_size, ddp_backend)
