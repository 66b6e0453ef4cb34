"""Export a pruned checkpoint: a physically smaller file whose config states the new depth.

Fan et al. (arXiv 1909.11556) prune a LayerDrop model to any depth without finetuning; this
writes that sub-network as a checkpoint of its own. The pruning options are the tasks'
(``--encoder-layers-to-keep``, ``--layers-to-keep``, ``--prune-to R --prune-strategy S``, ...).

    fairseq-layerdrop-prune IN.pt OUT.pt --decoder-prune-to 8 --prune-strategy every-other

A checkpoint of fairseq's own architectures stays loadable by plain fairseq without
``--user-dir`` (its argparse config is written as a plain dict, which torch's safe loader
accepts); a plugin checkpoint keeps needing ``--user-dir``. The optimizer state of the full model
is not carried over (continue training with ``--reset-optimizer``). The input is never
overwritten, and the output appears whole or not at all.
"""

import argparse
import os
import sys
import tempfile

import torch
from fairseq.dataclass.utils import gen_parser_from_dataclass

from .. import compat  # noqa: F401  (allow-lists the classes plugin checkpoints hold)
from .options import PruningOptions, clear_pruning_options, pruning_requests
from .state_dict import STACKS, PruningError, count_parameters, prune_state_dict, stack_depth


def model_config(state):
    """The model config of a raw checkpoint: ``cfg['model']`` (current fairseq) or ``args`` (old)."""
    cfg = state.get("cfg")
    if cfg is not None and cfg.get("model") is not None:
        return cfg["model"]
    if state.get("args") is not None:
        return state["args"]
    raise PruningError("the checkpoint has neither cfg.model nor args: is it a fairseq checkpoint?")


def prune_checkpoint(state, options):
    """Prune a raw checkpoint dict in place; return ``{stack: kept list}``."""
    cfg = model_config(state)
    stacks = [s for s in STACKS if stack_depth(cfg, s) is not None]
    requests = pruning_requests(options, cfg, stacks)
    if not requests:
        raise PruningError("nothing to prune: give --layers-to-keep, --*-layers-to-keep or --*prune-to")
    kept = {s: r.kept(stack_depth(cfg, s), state_dict=state["model"], cfg=cfg) for s, r in requests.items()}
    state["model"], new_cfg = prune_state_dict(state["model"], cfg, kept)
    if type(new_cfg) is argparse.Namespace:  # fairseq's own legacy architectures: keep it loadable without us
        new_cfg = dict(vars(new_cfg))
    if state.get("cfg") is not None and state["cfg"].get("model") is not None:
        state["cfg"]["model"] = new_cfg
        clear_pruning_options(state["cfg"].get("task") or {})  # the saved task options must not prune again
    else:
        state["args"] = new_cfg
    state.pop("last_optimizer_state", None)
    (state.get("extra_state") or {}).pop("ema", None)
    return kept


def save_atomically(state, path):
    """Write ``state`` to ``path`` through a temporary file in the same directory, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".prune-", suffix=".pt.tmp", dir=directory)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fairseq-layerdrop-prune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="checkpoint to prune (never modified)")
    parser.add_argument("output", help="where to write the pruned checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    gen_parser_from_dataclass(parser, PruningOptions())
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not os.path.isfile(args.input):
        sys.exit(f"error: no checkpoint at {args.input}")
    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        sys.exit("error: the output is the input; write the pruned checkpoint to a new path")
    if os.path.exists(args.output) and not args.overwrite:
        sys.exit(f"error: {args.output} exists; pass --overwrite to replace it")
    state = torch.load(args.input, map_location="cpu", weights_only=True)
    before = count_parameters(state["model"])
    try:
        kept = prune_checkpoint(state, args)
    except PruningError as error:
        sys.exit(f"error: {error}")
    after = count_parameters(state["model"])
    save_atomically(state, args.output)
    for stack, layers in kept.items():
        print(f"{stack}: kept layers {','.join(map(str, layers))}")
    size_in, size_out = os.path.getsize(args.input), os.path.getsize(args.output)
    print(f"parameters: {before:,} -> {after:,} ({after / before:.1%})")
    print(f"file size:  {size_in / 1e6:.2f} MB -> {size_out / 1e6:.2f} MB; wrote {args.output}")


if __name__ == "__main__":
    main()
