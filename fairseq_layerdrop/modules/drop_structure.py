"""What a training step drops: whole layers, sub-layers or attention heads (Fan et al., Fig. 4).

Fan, Grave & Joulin (arXiv 1909.11556, Figure 4) compare structured dropout of attention heads,
of sub-layers (the attention block or the FFN block, independently) and of whole layers; whole
layers work best and are what gives pruning at inference. The structures here:

- ``layer``: a dropped layer does not run (the paper's LayerDrop).
- ``sublayer``: the attention block and the FFN block of each layer are dropped independently,
  each at the layer's rate; a dropped block does not run (the residual passes through).
- ``attention`` / ``ffn``: only that block is ever dropped.
- ``head``: each attention head is dropped at the layer's rate and the kept heads are scaled by
  1 / (1 - rate), like dropout. Every block still runs: head dropping saves no compute.
- ``head+layer``: whole layers are dropped, and heads inside the layers that run.

In a decoder layer "attention" means its self-attention and encoder-attention blocks together
(one draw); heads are drawn separately for the two. Every decision compares a seeded uniform draw
(``layer_uniforms``) with the layer's rate, under a distinct draw name per structure, so the
structures are decorrelated and all workers agree.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from .seeded_draw import layer_uniforms

STRUCTURES = ("layer", "sublayer", "attention", "ffn", "head", "head+layer")


@dataclass
class LayerPlan:
    """What one layer runs at one step; the default runs everything."""

    attention: bool = True
    ffn: bool = True
    head_scale: Optional[torch.Tensor] = None  # self-attention heads: 0 (dropped) or 1 / (1 - rate)
    encoder_head_scale: Optional[torch.Tensor] = None  # encoder-attention heads of a decoder layer

    @property
    def skipped(self) -> bool:
        return not (self.attention or self.ffn)

    @property
    def full(self) -> bool:
        return self.attention and self.ffn and self.head_scale is None and self.encoder_head_scale is None

    def describe(self) -> str:
        """``"layer"``, ``"-"`` (skipped), ``"attn"``, ``"ffn"``, with ``heads=1011`` when heads are dropped."""
        if self.skipped:
            return "-"
        text = "layer" if self.attention and self.ffn else ("attn" if self.attention else "ffn")
        for name, scale in (("heads", self.head_scale), ("enc_heads", self.encoder_head_scale)):
            if scale is not None:
                text += f" {name}=" + "".join("1" if s > 0 else "0" for s in scale.tolist())
        return text


def check_structure(structure: str) -> str:
    if structure not in STRUCTURES:
        raise ValueError(f"--layerdrop-structure must be one of {', '.join(STRUCTURES)}, got {structure!r}")
    return structure


def _block_keep(rates: torch.Tensor, seed, update, micro_batch, pass_index, name) -> List[bool]:
    return (layer_uniforms(len(rates), seed, update, micro_batch, name, pass_index) >= rates).tolist()


def _head_scales(rates: torch.Tensor, num_heads, seed, update, micro_batch, pass_index, name) -> List[Optional[torch.Tensor]]:
    draws = layer_uniforms(len(rates) * num_heads, seed, update, micro_batch, name, pass_index).view(len(rates), num_heads)
    keep = (draws >= rates[:, None]).float()
    scales = keep / (1.0 - rates[:, None])
    return [None if r == 0 else s for r, s in zip(rates.tolist(), scales)]


def plan_step(
    structure: str,
    rates: Sequence[float],
    seed: int,
    update: int,
    micro_batch: int,
    stack: str,
    num_heads: int = 0,
    encoder_attention: bool = False,
    pass_index: int = 0,
) -> List[LayerPlan]:
    """The plan of every layer of a stack at one step (one forward pass): a pure function of its arguments.

    ``layer`` uses the draw named ``stack`` (as ``layer_keep_mask``); the blocks use
    ``stack.attention`` and ``stack.ffn``; heads ``stack.self_attn.heads`` and ``stack.encoder_attn.heads``.
    """
    rates_t = torch.tensor([float(r) for r in rates])
    n = len(rates_t)
    plans = [LayerPlan() for _ in range(n)]
    draw = (seed, update, micro_batch, pass_index)
    if structure in ("layer", "head+layer"):
        for plan, keep in zip(plans, _block_keep(rates_t, *draw, stack)):
            plan.attention = plan.ffn = keep
    if structure in ("sublayer", "attention"):
        for plan, keep in zip(plans, _block_keep(rates_t, *draw, f"{stack}.attention")):
            plan.attention = keep
    if structure in ("sublayer", "ffn"):
        for plan, keep in zip(plans, _block_keep(rates_t, *draw, f"{stack}.ffn")):
            plan.ffn = keep
    if structure in ("head", "head+layer"):
        for plan, scale in zip(plans, _head_scales(rates_t, num_heads, *draw, f"{stack}.self_attn.heads")):
            plan.head_scale = scale
        if encoder_attention:
            for plan, scale in zip(plans, _head_scales(rates_t, num_heads, *draw, f"{stack}.encoder_attn.heads")):
                plan.encoder_head_scale = scale
    for plan in plans:
        if plan.skipped:
            plan.head_scale = plan.encoder_head_scale = None
    return plans
