"""Score kept-layer lists in one process: load a checkpoint once, swap which layers run, measure.

Searching layers on validation (Fan et al. arXiv 1909.11556) and scoring layer contributions
(Sajjad et al. arXiv 2004.03844) evaluate many sub-networks of one model. Starting a fairseq
command per candidate would spend about 4 s importing each time; here the model is loaded once,
the validation batches are read once, and ``running_layers`` swaps each stack's layer list (the
same modules, so nothing is copied) for the duration of one evaluation.
"""

import math
import pickle
from contextlib import contextmanager
from typing import Dict, List, Sequence

import torch
from torch import nn

from .state_dict import stack_module


def load_checkpoint(checkpoint: str, data: str):
    """``(model, task)`` for a checkpoint (the plugin's or fairseq's own), in eval mode on the CPU."""
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": data})
    return models[0].eval(), task


def validation_batches(model, task, subset: str = "valid", max_tokens: int = 4096, max_batches: int = 0) -> List[dict]:
    """The ``subset``'s batches as fairseq's validation reads them (unshuffled), kept in memory."""
    from fairseq import utils

    task.load_dataset(subset)
    iterator = task.get_batch_iterator(
        dataset=task.dataset(subset), max_tokens=max_tokens,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=True, seed=1,
    ).next_epoch_itr(shuffle=False)
    batches = [b for b in iterator if b]
    return batches[:max_batches] if max_batches else batches


@torch.no_grad()
def perplexity(model, batches: Sequence[dict]) -> float:
    """exp(mean negative log-likelihood per target token): fairseq's valid ``ppl``. For a masked LM (an
    encoder-only model such as RoBERTa: fairseq's ``masked_lm`` criterion), of the masked tokens."""
    total, count = 0.0, 0
    masked_lm = getattr(model, "decoder", None) is None
    pad = (model.encoder if masked_lm else model.decoder).dictionary.pad()
    for sample in batches:
        if masked_lm:
            masked = sample["target"].ne(pad)
            logits = model(**sample["net_input"], masked_tokens=masked)[0]
            lprobs = model.get_normalized_probs((logits,), log_probs=True)
            target = sample["target"][masked]
        else:
            output = model(**sample["net_input"])
            lprobs = model.get_normalized_probs(output, log_probs=True)
            target = model.get_targets(sample, output)
        nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        mask = target.ne(pad)
        total += nll[mask].double().sum().item()
        count += int(mask.sum())
    return math.exp(total / max(count, 1))


@contextmanager
def running_layers(model, kept: Dict[str, Sequence[int]]):
    """Within the block, each named stack of ``model`` runs only its ``kept`` layers, in that order."""
    saved = {}
    try:
        for stack, layers in kept.items():
            module = stack_module(model, stack)
            saved[stack] = (module.layers, module.num_layers)
            module.layers = nn.ModuleList([saved[stack][0][i] for i in layers])
            module.num_layers = len(layers)
        yield model
    finally:
        for stack, (layers, num_layers) in saved.items():
            module = stack_module(model, stack)
            module.layers, module.num_layers = layers, num_layers


def add_scoring_arguments(parser, max_batches: int) -> None:
    """The command-line arguments shared by the scripts that score layers on data."""
    parser.add_argument("checkpoint")
    parser.add_argument("data", help="the binarized data directory the checkpoint was trained on")
    parser.add_argument("--stack", choices=["encoder", "decoder"], default="decoder")
    parser.add_argument("--subset", default="valid", help="the split to score on (default valid)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="tokens per batch")
    parser.add_argument("--max-batches", type=int, default=max_batches,
                        help=f"score on the first N batches only (0: the whole split; default {max_batches})")


def check_scoring_arguments(args) -> None:
    """Refuse, before loading anything, a checkpoint or data directory that is not one, or a bad count."""
    import os

    if not os.path.isfile(args.checkpoint):
        raise ValueError(f"no checkpoint at {args.checkpoint}" + (" (it is a directory; give the .pt file)"
                                                                  if os.path.isdir(args.checkpoint) else ""))
    if os.path.getsize(args.checkpoint) == 0:
        raise ValueError(f"{args.checkpoint} is empty, not a checkpoint")
    if not os.path.isdir(args.data):
        raise ValueError(f"DATA {args.data} is not a directory: give the binarized data directory the checkpoint "
                         "was trained on (fairseq-preprocess --destdir)")
    if args.max_tokens < 1:
        raise ValueError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    if args.max_batches < 0:
        raise ValueError(f"--max-batches must be 0 (the whole split) or more, got {args.max_batches}")


def load_for_scoring(args):
    """``(model, task, batches)`` for the arguments of ``add_scoring_arguments``; ValueError naming what is wrong."""
    check_scoring_arguments(args)
    try:
        model, task = load_checkpoint(args.checkpoint, args.data)
    except (EOFError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as error:
        first = next((line.strip() for line in str(error).split("WeightsUnpickler error:")[-1].splitlines()
                      if line.strip()), type(error).__name__)
        raise ValueError(f"cannot load {args.checkpoint} as a fairseq checkpoint ({type(error).__name__}: "
                         f"{first[:200]})") from None
    if stack_module(model, args.stack) is None:
        raise ValueError(f"--stack {args.stack}: this model has no {args.stack}")
    try:
        batches = validation_batches(model, task, args.subset, args.max_tokens, args.max_batches)
    except FileNotFoundError as error:
        raise ValueError(f"--subset {args.subset}: no such split in {args.data} ({error})") from None
    if not batches:
        raise ValueError(f"--subset {args.subset}: the split in {args.data} gave no batches")
    return model, task, batches
