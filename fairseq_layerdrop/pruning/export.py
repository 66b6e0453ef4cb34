"""Export a pruned checkpoint: a physically smaller file whose config states the new depth.

Fan et al. (arXiv 1909.11556) prune a LayerDrop model to any depth without finetuning; this
writes that sub-network as a checkpoint of its own. The pruning options are the tasks'
(``--encoder-layers-to-keep``, ``--layers-to-keep``, ``--prune-to R --prune-strategy S``, ...).

    fairseq-layerdrop-prune IN.pt OUT.pt --decoder-prune-to 8 --prune-strategy every-other
    fairseq-layerdrop-prune IN.pt OUT.pt --prune-to 6 --as-fairseq        # fairseq's own architecture
    fairseq-layerdrop-prune IN.pt OUT.pt --prune-to 6 --for-ctranslate2   # ... for ct2-fairseq-converter

A checkpoint of fairseq's own architectures stays loadable by plain fairseq without
``--user-dir`` (its argparse config is written as a plain dict, which torch's safe loader
accepts); a plugin checkpoint keeps its architecture and keeps needing ``--user-dir`` (and says so
when loaded without it), unless ``--as-fairseq`` writes it as fairseq's own ``transformer`` /
``transformer_lm`` / ``roberta``, which plain fairseq loads, and ``--for-ctranslate2`` in the form CTranslate2's
converter reads (``pruning/plain_fairseq.py``; these two also convert without pruning). They are
flags, not the default, because they drop what only the plugin reads: the LayerDrop training
settings and learned layer gates.
Neither the optimizer state nor the EMA weights of the full model are carried over: continue
training an export with ``--finetune-from-model OUT.pt`` and its new depth (``--decoder-layers R``;
a model of another depth is refused naming that flag). The input is never overwritten, the output
appears whole or not at all (even after ``kill -9``), with the permissions the umask gives, and
ordinary mistakes (a missing or wrong input, an output that cannot be written) are refused in
one line before anything is loaded.
"""

import argparse
import os
import sys
import tempfile

import torch
from fairseq.dataclass.utils import gen_parser_from_dataclass

from .. import compat  # noqa: F401  (allow-lists the classes plugin checkpoints hold)
from .options import PruningOptions, check_strategy_has_a_depth, clear_pruning_options, pruning_requests
from .state_dict import STACKS, PruningError, count_parameters, prune_state_dict, stack_depth


def model_config(state):
    """The model config of a raw checkpoint: ``cfg['model']`` (current fairseq) or ``args`` (old)."""
    cfg = state.get("cfg")
    if cfg is not None and cfg.get("model") is not None:
        return cfg["model"]
    if state.get("args") is not None:
        return state["args"]
    raise PruningError("the checkpoint has neither cfg.model nor args: is it a fairseq checkpoint?")


def prune_checkpoint(state, options, allow_nothing=False):
    """Prune a raw checkpoint dict in place; return ``{stack: kept list}`` (empty when nothing is asked and
    ``allow_nothing``: a conversion alone)."""
    cfg = model_config(state)
    stacks = [s for s in STACKS if stack_depth(cfg, s) is not None]
    requests = pruning_requests(options, cfg, stacks)
    if not requests:
        if allow_nothing:
            return {}
        raise PruningError("nothing to prune: give --layers-to-keep, --*-layers-to-keep or --*prune-to "
                           "(or --as-fairseq / --for-ctranslate2 to convert without pruning)")
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


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomically(state, path, overwrite=True):
    """Write ``state`` to ``path`` so that the file appears whole or not at all, readable as the umask allows.

    The checkpoint is written into an unnamed file of the output directory (Linux ``O_TMPFILE``),
    which the kernel frees if the process dies at any point, even by ``kill -9``, and only then
    given its name. Without ``overwrite`` the name is taken with ``link``, which never replaces a
    file that appeared meanwhile; with it, through a second name and a rename (which replaces
    the old file in one step). Where the file system has no unnamed files, a named temporary
    ``.prune-*.pt.tmp`` is written and renamed; it is removed on any error, but not after ``kill -9``.
    """
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    mode = 0o666 & ~current_umask()  # what open() would give: mkstemp's 0600 would survive the rename
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, mode, dir_fd=dir_fd)
        except (AttributeError, OSError):  # no O_TMPFILE here
            return _save_through_named_temporary(state, directory, name, mode, overwrite)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
            unnamed = f"/proc/self/fd/{f.fileno()}"
            if not overwrite:
                os.link(unnamed, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=True)
                return
            temporary = f".prune-{os.getpid()}-{name}.tmp"
            os.link(unnamed, temporary, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=True)
            try:
                os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                os.remove(temporary, dir_fd=dir_fd)
                raise
    finally:
        os.close(dir_fd)


def _save_through_named_temporary(state, directory, name, mode, overwrite):
    fd, tmp = tempfile.mkstemp(prefix=".prune-", suffix=".pt.tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        target = os.path.join(directory, name)
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # never replaces a file that appeared meanwhile
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
    parser.add_argument("--as-fairseq", action="store_true",
                        help="write fairseq's own architecture (transformer, transformer_lm, roberta), task and "
                             "criterion, which plain fairseq loads without --user-dir; drops the plugin's training "
                             "settings and learned gates (pruning optional)")
    parser.add_argument("--for-ctranslate2", action="store_true",
                        help="as --as-fairseq, with the model config in the form ct2-fairseq-converter reads (an "
                             "argparse.Namespace: convert with --unsafe_deserialization); transformer and "
                             "transformer_lm only; refuses what CTranslate2 cannot compute")
    gen_parser_from_dataclass(parser, PruningOptions())
    return parser


def refuse(message):
    sys.exit(f"error: {message}")


def blocking_file(directory):
    """The file that stands where ``directory`` or one of its ancestors should be, or None.

    ``OUT/x.pt`` where ``OUT`` is a file cannot be written, and neither created (``mkdir -p``): say so,
    rather than that the directory does not exist."""
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return None if os.path.isdir(path) else path


def check_paths(source, output, overwrite):
    """Refuse, before any loading, an input that is no file or an output that cannot be written."""
    if not os.path.exists(source):
        refuse(f"no checkpoint at {source}")
    if not os.path.isfile(source):
        refuse(f"{source} is a directory, not a checkpoint file; give the .pt file")
    if not os.access(source, os.R_OK):
        refuse(f"cannot read {source} (permission denied)")
    if os.path.isdir(output):
        refuse(f"the output {output} is a directory; give a file path, e.g. {os.path.join(output, 'pruned.pt')}")
    directory = os.path.dirname(os.path.abspath(output))
    if blocking_file(directory):
        refuse(f"cannot write {output}: {blocking_file(directory)} is a file, not a directory")
    if not os.path.isdir(directory):
        refuse(f"the output directory {directory} does not exist; create it first (mkdir -p {directory})")
    if not os.access(directory, os.W_OK | os.X_OK):
        refuse(f"cannot write to the output directory {directory} (permission denied)")
    if os.path.exists(output) and os.path.samefile(source, output):
        refuse("the output is the input; write the pruned checkpoint to a new path")
    if os.path.exists(output) and not overwrite:
        refuse(f"{output} exists; pass --overwrite to replace it")


def read_checkpoint(source):
    """The raw checkpoint dict at ``source``; a ``PruningError`` saying what the file is instead."""
    if os.path.getsize(source) == 0:
        raise PruningError(f"{source} is empty, not a checkpoint (an interrupted copy or save?)")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError ... by content
        text = str(error)
        if "WeightsUnpickler error:" in text:  # skip torch's advice to load unsafely
            text = text.split("WeightsUnpickler error:", 1)[1]
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__
        raise PruningError(f"{source} is not a fairseq checkpoint: torch's safe loader cannot read it ({detail})") \
            from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise PruningError(f"{source} is a torch file but not a fairseq checkpoint (it has no 'model' state dict)")
    return state


def load_checkpoint_file(source):
    """The raw checkpoint dict at ``source``, or a one-line refusal saying what the file is instead."""
    try:
        return read_checkpoint(source)
    except PruningError as error:
        refuse(error)


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_paths(args.input, args.output, args.overwrite)
    try:
        check_strategy_has_a_depth(args)
    except PruningError as error:
        refuse(error)
    state = load_checkpoint_file(args.input)
    before = count_parameters(state["model"])
    plain = args.as_fairseq or args.for_ctranslate2
    notes = []
    try:
        kept = prune_checkpoint(state, args, allow_nothing=plain)
        if plain:
            from .plain_fairseq import as_plain_fairseq

            notes = as_plain_fairseq(state, for_ctranslate2=args.for_ctranslate2)
    except PruningError as error:
        refuse(error)
    after = count_parameters(state["model"])
    try:
        save_atomically(state, args.output, overwrite=args.overwrite)
    except FileExistsError:
        refuse(f"{args.output} appeared while pruning; pass --overwrite to replace it")
    except OSError as error:
        refuse(f"could not write {args.output} ({error.strerror or error}); nothing was written")
    for stack, layers in kept.items():
        print(f"{stack}: kept layers {','.join(map(str, layers))}")
    for note in notes:
        print(f"as fairseq: {note}")
    if plain:
        model = state["cfg"]["model"]
        name = model["_name"] if isinstance(model, dict) else model._name
        print(f"wrote fairseq's {name}: " + ("convert it with ct2-fairseq-converter --unsafe_deserialization"
                                             if args.for_ctranslate2 else "plain fairseq loads it without --user-dir"))
    size_in, size_out = os.path.getsize(args.input), os.path.getsize(args.output)
    print(f"parameters: {before:,} -> {after:,} ({after / before:.1%})")
    print(f"file size:  {size_in / 1e6:.2f} MB -> {size_out / 1e6:.2f} MB; wrote {args.output}")


if __name__ == "__main__":
    main()
