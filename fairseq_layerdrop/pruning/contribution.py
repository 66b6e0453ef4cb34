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
import math
from typing import List, Sequence

import torch

from .state_dict import PruningError, stack_module
from .strategies import register_strategy


@torch.no_grad()
def layer_contributions(model, batches: Sequence[dict], stack: str = "decoder") -> List[float]:
    """Mean 1 - cos(input, output) of each layer of ``model.<stack>`` over the tokens of ``batches``."""
    module = stack_module(model, stack)
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


def existing_result(path: str, flag: str = "--out"):
    """The JSON object with ``stacks`` already at ``path`` (None if there is no file); a ValueError, naming
    ``flag``, for a path that cannot be written or a file that is not such a result (it would be lost)."""
    import os

    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a directory; give a .json file path")
    from .export import blocking_file

    directory = os.path.dirname(os.path.abspath(path))
    if blocking_file(directory):
        raise ValueError(f"{flag} {path}: {blocking_file(directory)} is a file, not a directory")
    if not os.path.isdir(directory):
        raise ValueError(f"{flag} {path}: the directory {directory} does not exist; create it first")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            result = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{flag} {path} exists and is not a JSON result ({error}); give another path") from None
    if not isinstance(result, dict) or not isinstance(result.get("stacks"), dict):
        raise ValueError(f"{flag} {path} exists and is not a result with \"stacks\"; give another path")
    return result


def save_contributions(path: str, stack: str, scores: Sequence[float], checkpoint: str) -> None:
    """Add (or replace) the scores of ``stack`` in the JSON file at ``path``."""
    result = existing_result(path) or {"checkpoint": checkpoint, "score": "mean 1 - cos(layer input, layer output)",
                                       "stacks": {}}
    result["stacks"][stack] = {"num_layers": len(scores), "scores": list(scores)}
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


@register_strategy("contribution", needs=("argument",))
def contribution(num_layers: int, keep: int, stack: str = "decoder", argument=None, **context) -> List[int]:
    """``contribution:SCORES.json``: the ``keep`` layers that change their input most (Sajjad et al.)."""
    flag = f"--prune-strategy contribution:{argument}"
    remedy = f"run fairseq-layerdrop contributions --stack {stack}"
    try:
        with open(argument) as f:
            result = json.load(f)
    except (OSError, ValueError) as error:
        raise PruningError(f"{flag}: cannot read layer scores ({error}); {remedy}") from None
    stacks = result.get("stacks") if isinstance(result, dict) else None
    entry = stacks.get(stack) if isinstance(stacks, dict) else None
    if not isinstance(entry, dict) or "scores" not in entry:
        raise PruningError(f"{flag}: no scores for the {stack}; {remedy}")
    scores = entry["scores"]
    if not isinstance(scores, list) or not all(
        type(s) in (int, float) and math.isfinite(s) for s in scores
    ):
        raise PruningError(f"{flag}: the {stack}'s scores must be a list of finite numbers, got {scores!r}; {remedy}")
    if len(scores) != num_layers:
        raise PruningError(f"{flag} scores a {stack} of {len(scores)} layers; this one has {num_layers}")
    ranked = sorted(range(num_layers), key=lambda i: (-scores[i], i))
    return sorted(ranked[:keep])
