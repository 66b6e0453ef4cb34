"""Contribution-based layer dropping (Sajjad et al. arXiv 2004.03844), for any trained model.

A layer that changes its input little contributes little. On a sample of data, each layer's
contribution is the mean over (non-padding) tokens of 1 - cos(input, output) of the layer
(its whole residual block, including the block's layer norm); ``--prune-strategy
contribution:SCORES.json`` keeps the R highest-scoring layers in their original order. Models
trained without LayerDrop (fairseq's own ``transformer``, ``transformer_lm``) work as well.
Scores are computed by ``fairseq-layerdrop contributions`` (one forward pass over the sample at
full depth) and saved, so every consumer of a strategy (tasks, export, sweep) can read them.
"""

import json
from typing import List, Sequence

import torch

from .state_dict import PruningError
from .strategies import register_strategy


@torch.no_grad()
def layer_contributions(model, batches: Sequence[dict], stack: str = "decoder") -> List[float]:
    """Mean 1 - cos(input, output) of each layer of ``model.<stack>`` over the tokens of ``batches``."""
    module = getattr(model, stack)
    layers = [module.layers[i] for i in range(len(module.layers))]
    totals, counts = [0.0] * len(layers), [0] * len(layers)
    mask = {}

    def hook(index):
        def record(_module, inputs, output):
            x_in = inputs[0]
            x_out = output[0] if isinstance(output, tuple) else output
            change = 1.0 - torch.nn.functional.cosine_similarity(x_in.float(), x_out.float(), dim=-1)  # T x B
            keep = mask["tokens"]
            if keep is not None and keep.shape == change.shape:
                change = change[keep]
            totals[index] += change.double().sum().item()
            counts[index] += change.numel()
        return record

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    pad = (getattr(module, "dictionary", None) or model.decoder.dictionary).pad()
    try:
        model.eval()
        for sample in batches:
            net_input = sample["net_input"]
            tokens = net_input["src_tokens"] if stack == "encoder" else net_input.get("prev_output_tokens",
                                                                                       net_input["src_tokens"])
            mask["tokens"] = tokens.ne(pad).t()  # layers see time-major T x B x C
            model(**net_input)
    finally:
        for handle in handles:
            handle.remove()
    return [t / max(c, 1) for t, c in zip(totals, counts)]


def save_contributions(path: str, stack: str, scores: Sequence[float], checkpoint: str) -> None:
    """Add (or replace) the scores of ``stack`` in the JSON file at ``path``."""
    result = {"checkpoint": checkpoint, "score": "mean 1 - cos(layer input, layer output)", "stacks": {}}
    try:
        with open(path) as f:
            result = json.load(f)
    except FileNotFoundError:
        pass
    result["stacks"][stack] = {"num_layers": len(scores), "scores": list(scores)}
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


@register_strategy("contribution", needs=("argument",))
def contribution(num_layers: int, keep: int, stack: str = "decoder", argument=None, **context) -> List[int]:
    """``contribution:SCORES.json``: the ``keep`` layers that change their input most (Sajjad et al.)."""
    try:
        with open(argument) as f:
            entry = json.load(f)["stacks"][stack]
    except (OSError, ValueError, KeyError) as error:
        raise PruningError(f"--prune-strategy contribution:{argument}: no scores for the {stack} ({error}); "
                           f"run fairseq-layerdrop contributions --stack {stack}") from None
    scores = entry["scores"]
    if len(scores) != num_layers:
        raise PruningError(f"--prune-strategy contribution:{argument} scores a {stack} of {len(scores)} layers; "
                           f"this one has {num_layers}")
    ranked = sorted(range(num_layers), key=lambda i: (-scores[i], i))
    return sorted(ranked[:keep])
