"""``fairseq-layerdrop gates``: print the learned keep probability of every layer of a checkpoint trained with --layer-gates.

    fairseq-layerdrop gates checkpoint_best.pt

The keep probability of layer d is 1 - p_d, p_d = N * p * softmax(gates)_d capped at 0.95
(``fairseq_layerdrop/modules/layer_gates.py``); ``--prune-strategy learned`` keeps the top R.
"""

import argparse
import os
import sys


def main(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    args = parser.parse_args(argv)

    import torch

    from fairseq_layerdrop.pruning import PruningError, stack_depth
    from fairseq_layerdrop.pruning.export import model_config
    from fairseq_layerdrop.pruning.learned import gate_logits, learned_keep_probabilities

    if not os.path.isfile(args.checkpoint):
        sys.exit(f"fairseq-layerdrop gates: no checkpoint at {args.checkpoint}")
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    cfg = model_config(state)
    shown = 0
    for stack in ("encoder", "decoder"):
        depth = stack_depth(cfg, stack)
        if depth is None:
            continue
        try:
            keep = learned_keep_probabilities(state["model"], cfg, stack, depth).tolist()
        except PruningError as error:
            print(f"{stack}: {error}")
            continue
        logits = gate_logits(state["model"], stack, depth).tolist()
        order = sorted(range(depth), key=lambda i: (logits[i], i))  # by keep probability
        print(f"{stack}: {depth} layers, mean keep probability {sum(keep) / depth:.3f}")
        print("| layer | drop logit | keep probability | rank |\n|---:|---:|---:|---:|")
        for i in range(depth):
            print(f"| {i} | {logits[i]:+.3f} | {keep[i]:.3f} | {order.index(i) + 1} |")
        shown += 1
    if not shown:
        sys.exit("fairseq-layerdrop gates: no learned gates in this checkpoint (train with --layer-gates)")


if __name__ == "__main__":
    main()
