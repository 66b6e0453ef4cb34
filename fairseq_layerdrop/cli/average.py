"""``fairseq-layerdrop average``: average the parameters of the last N epoch checkpoints (Vaswani et al. 2017;
Ott et al. 2018 average the last 10 for WMT En-De, fairseq ``examples/scaling_nmt/README.md``).

fairseq's own ``scripts/average_checkpoints.py`` is not part of the installed ``fairseq`` package,
so the recipes use this one; it takes the same main options (the WMT16 recipe's ``AVERAGE_SCRIPT=path``
runs fairseq's instead). The output is the newest input checkpoint with its
``model`` replaced by the element-wise mean (in float64, cast back to each tensor's dtype) and
without optimizer state. Plugin checkpoints load through ``fairseq_layerdrop`` (torch's safe loader).

    fairseq-layerdrop average --inputs CKPT_DIR --num-epoch-checkpoints 10 --output avg.pt
    fairseq-layerdrop average --inputs a.pt b.pt --output avg.pt
"""

import argparse
import os
import re
import sys


def last_epoch_checkpoints(directory: str, n: int):
    """The ``n`` checkpoints ``checkpoint{epoch}.pt`` of the highest epochs, oldest first."""
    epochs = sorted(int(m.group(1)) for name in os.listdir(directory)
                    if (m := re.fullmatch(r"checkpoint(\d+)\.pt", name)))
    if len(epochs) < n:
        raise ValueError(f"--num-epoch-checkpoints {n}: {directory} has only {len(epochs)} epoch checkpoints "
                         f"({', '.join(f'checkpoint{e}.pt' for e in epochs) or 'none'}); train longer or lower N")
    return [os.path.join(directory, f"checkpoint{e}.pt") for e in epochs[-n:]]


def average(paths):
    """The state of the last checkpoint with the mean of all checkpoints' parameters."""
    from collections import OrderedDict

    import fairseq_layerdrop  # noqa: F401  (allow-lists the classes fairseq checkpoints hold)
    from fairseq_layerdrop.pruning.export import read_checkpoint

    total, state = None, None
    for path in paths:
        state = read_checkpoint(path)  # a ValueError naming the file if it is not a checkpoint
        model = state["model"]
        if total is None:
            total = {k: v.double() for k, v in model.items()}
        else:
            if set(model) != set(total) or any(v.shape != total[k].shape for k, v in model.items()):
                raise ValueError(f"{path} has other parameters than {paths[0]}: not the same model")
            for k, v in model.items():
                total[k] += v.double()
    averaged = OrderedDict((k, (total[k] / len(paths)).to(v.dtype)) for k, v in state["model"].items())
    averaged.__dict__.update(getattr(state["model"], "__dict__", {}))  # torch's _metadata, the --user-dir mark
    state["model"] = averaged
    state["last_optimizer_state"] = None
    return state


def main(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", required=True, help="checkpoint files, or one directory")
    parser.add_argument("--num-epoch-checkpoints", type=int, help="with a directory: average its last N epochs")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    try:
        if len(args.inputs) == 1 and os.path.isdir(args.inputs[0]):
            if not args.num_epoch_checkpoints or args.num_epoch_checkpoints < 1:
                raise ValueError("--inputs is a directory: give --num-epoch-checkpoints N (N >= 1)")
            paths = last_epoch_checkpoints(args.inputs[0], args.num_epoch_checkpoints)
        else:
            paths = args.inputs
            if args.num_epoch_checkpoints is not None:
                raise ValueError("--num-epoch-checkpoints reads a directory: give --inputs DIR, or drop it and "
                                 "list the checkpoint files")
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise ValueError(f"--inputs: no such checkpoint {missing[0]}")
        if os.path.isdir(args.output):
            raise ValueError(f"--output {args.output} is a directory; give a file path")
        from fairseq_layerdrop.pruning.export import blocking_file

        if blocking_file(os.path.dirname(os.path.abspath(args.output))):
            raise ValueError(f"--output {args.output}: {blocking_file(os.path.dirname(os.path.abspath(args.output)))} "
                             "is a file, not a directory")
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
            raise ValueError(f"--output {args.output}: its directory does not exist; create it first")
        state = average(paths)
    except ValueError as error:
        sys.exit(f"fairseq-layerdrop average: {error}")
    from fairseq_layerdrop.pruning.export import save_atomically

    save_atomically(state, args.output)  # whole or not at all, even after kill -9
    print(f"averaged {len(paths)} checkpoints ({', '.join(os.path.basename(p) for p in paths)}) into {args.output}")


if __name__ == "__main__":
    main()
