"""Two forward passes of one batch, each its own sub-model, recorded layer by layer (LR-Drop).

LR-Drop (Ni et al., "Layer-wise Regularized Dropout for Neural Language Models", LREC-COLING 2024,
arXiv 2402.16361) passes every sample through two "siamese" sub-models sampled by dropout and makes
their hidden states, attention matrices and outputs agree. With LayerDrop the sub-models also differ
in depth: pass k draws its layers with pass index k in the seeded draw (``seeded_draw.layer_uniforms``),
so every worker agrees and a resumed run repeats the draws.

``siamese_passes(model, record_attention)`` is a context manager that yields a ``PassRecorder``. Inside
it every ``SeededLayerDropList`` of the model yields all its slots (a skipped layer as the identity)
and the recorder keeps, per pass and stack:

- ``streams[l]``: the residual stream after slot l (T x B x C), whether layer l ran or not;
- ``ran[l]``: whether layer l ran (at least partly);
- ``attention[(kind, l)]``: the per-head attention log-probabilities (B x H x T x S) of the layer's
  self-attention (``self``) or encoder attention (``encoder``), recomputed from the block's own inputs,
  for the blocks that ran.

``recorder.run_pass(k)`` sets the pass; ``recorder.run_both()`` runs the two passes as one forward over
the batch written twice (fairseq's R-Drop does the same, ``duplicate_input``), used when the two
passes draw the same layers: the recorded tensors are then split into the two halves.
"""

import contextlib
from typing import Dict, List, Optional, Tuple

import torch

from .layer_drop import SeededLayerDropList
from .structured_layer import is_decoder_layer

BOTH = "both"
LOG_CLAMP = -1e4  # attention log-probabilities of masked positions (-inf) are clamped here: equal in both passes


def seeded_stacks(model) -> List[SeededLayerDropList]:
    """The model's seeded drop lists (the plugin's architectures), encoder first."""
    return [m for m in model.modules() if isinstance(m, SeededLayerDropList)]


def attention_log_probs(attention, query, key, key_padding_mask=None, attn_mask=None) -> torch.Tensor:
    """Per-head attention log-probabilities (B x H x T x S) of a fairseq ``MultiheadAttention``.

    Recomputed from the block's inputs with the block's own projections: fairseq's fast training path
    returns no weights (or only head-averaged ones). Refuses the options it does not reproduce.
    """
    if attention.bias_k is not None or attention.add_zero_attn:
        raise ValueError("the LR-Drop attention term does not support --add-bias-kv / --add-zero-attn")
    tgt_len, bsz, _ = query.shape
    src_len = key.shape[0]
    heads, head_dim = attention.num_heads, attention.head_dim
    q = (attention.q_proj(query) * attention.scaling).reshape(tgt_len, bsz * heads, head_dim).transpose(0, 1)
    k = attention.k_proj(key).reshape(src_len, bsz * heads, head_dim).transpose(0, 1)
    scores = torch.bmm(q, k.transpose(1, 2)).view(bsz, heads, tgt_len, src_len).float()
    if attn_mask is not None:
        scores = scores + attn_mask.float()
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask.view(bsz, 1, 1, src_len).to(torch.bool), float("-inf"))
    return torch.log_softmax(scores, dim=-1).clamp(min=LOG_CLAMP)


class RecordedSlot:
    """Slot ``index`` of a stack: runs ``run`` (None: the layer is skipped, the identity) and records the stream."""

    def __init__(self, recorder, stack: str, index: int, layer, run):
        self.recorder, self.stack, self.index, self.layer, self.run = recorder, stack, index, layer, run

    def __call__(self, x, *args, **kwargs):
        if self.run is None:
            out = (x, None, None) if is_decoder_layer(self.layer) else x
        else:
            out = self.run(x, *args, **kwargs)
        stream = out[0] if isinstance(out, tuple) else out
        self.recorder.record_stream(self.stack, self.index, stream, self.run is not None)
        return out


class PassRecorder:
    """What each pass computed, per stack and slot (see the module docstring)."""

    def __init__(self, stacks: List[SeededLayerDropList], record_attention: bool):
        self.stacks = stacks
        self.record_attention = record_attention
        self.current = 0
        self.streams: Dict[object, Dict[str, Dict[int, torch.Tensor]]] = {}
        self.ran: Dict[object, Dict[str, Dict[int, bool]]] = {}
        self.attention: Dict[object, Dict[str, Dict[Tuple[str, int], torch.Tensor]]] = {}

    def draw_label(self, pass_index: int):
        return self.current

    def slot(self, stack: str, index: int, layer, run) -> RecordedSlot:
        return RecordedSlot(self, stack, index, layer, run)

    def record_stream(self, stack: str, index: int, stream: torch.Tensor, ran: bool) -> None:
        self.streams.setdefault(self.current, {}).setdefault(stack, {})[index] = stream
        self.ran.setdefault(self.current, {}).setdefault(stack, {})[index] = ran

    def record_attention_probs(self, stack: str, kind: str, index: int, log_probs: torch.Tensor) -> None:
        self.attention.setdefault(self.current, {}).setdefault(stack, {})[(kind, index)] = log_probs

    def _set(self, current, pass_index: int, hold: bool) -> None:
        self.current = current
        for stack in self.stacks:
            stack.pass_index, stack.hold_micro_batch = pass_index, hold

    def run_pass(self, pass_index: int, last: bool) -> None:
        """The next forward is pass ``pass_index`` (``last``: the micro-batch's draw count then advances)."""
        self._set(pass_index, pass_index, not last)

    def run_both(self) -> None:
        """The next forward runs both passes at once, over the batch written twice (same draws)."""
        self._set(BOTH, 0, False)

    def same_draws(self) -> bool:
        """Whether passes 0 and 1 draw the same plans in every stack at the current step."""
        return all([p.describe() for p in s.step_plans(0)] == [p.describe() for p in s.step_plans(1)]
                   for s in self.stacks)

    def split(self) -> None:
        """After ``run_both``: the recorded tensors split into pass 0 (first half) and pass 1 (second half)."""
        if BOTH in self.streams:
            for stack, streams in self.streams.pop(BOTH).items():
                for index, t in streams.items():
                    a, b = t.chunk(2, dim=1)
                    self.streams.setdefault(0, {}).setdefault(stack, {})[index] = a
                    self.streams.setdefault(1, {}).setdefault(stack, {})[index] = b
            ran = self.ran.pop(BOTH)
            self.ran[0], self.ran[1] = ran, dict(ran)
        if BOTH in self.attention:
            for stack, blocks in self.attention.pop(BOTH).items():
                for key, t in blocks.items():
                    a, b = t.chunk(2, dim=0)
                    self.attention.setdefault(0, {}).setdefault(stack, {})[key] = a
                    self.attention.setdefault(1, {}).setdefault(stack, {})[key] = b


def _attention_hook(recorder: PassRecorder, stack: str, kind: str, index: int):
    def hook(module, args, kwargs, output):
        query = kwargs.get("query", args[0] if args else None)
        key = kwargs.get("key", args[1] if len(args) > 1 else None)
        key = query if key is None else key
        recorder.record_attention_probs(stack, kind, index, attention_log_probs(
            module, query, key, kwargs.get("key_padding_mask"), kwargs.get("attn_mask")))
    return hook


@contextlib.contextmanager
def siamese_passes(model, record_attention: bool = False):
    """Record the passes run inside the block (see the module docstring); yields the ``PassRecorder``."""
    stacks = seeded_stacks(model)
    recorder = PassRecorder(stacks, record_attention)
    handles = []
    try:
        for stack in stacks:
            stack.recorder = recorder
            if not record_attention:
                continue
            for index in range(len(stack)):
                layer = stack[index]
                for kind, name in (("self", "self_attn"), ("encoder", "encoder_attn")):
                    block: Optional[torch.nn.Module] = getattr(layer, name, None)
                    if block is not None:
                        handles.append(block.register_forward_hook(
                            _attention_hook(recorder, stack.stack, kind, index), with_kwargs=True))
        yield recorder
    finally:
        for handle in handles:
            handle.remove()
        for stack in stacks:
            stack.recorder, stack.pass_index, stack.hold_micro_batch = None, 0, False
