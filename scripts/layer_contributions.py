"""Score each layer's contribution on a data sample (Sajjad et al. arXiv 2004.03844).

A layer's score is the mean over tokens of 1 - cos(layer input, layer output): a layer that
changes its input little contributes little. Works on any checkpoint, including models trained
without LayerDrop (fairseq's own ``transformer`` / ``transformer_lm``).

    python scripts/layer_contributions.py CKPT DATA --stack decoder --out scores.json
    fairseq-eval-lm DATA --user-dir ... --task language_modeling_layerdrop --path CKPT \\
        --prune-to 4 --prune-strategy contribution:scores.json
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("data", help="the binarized data directory the checkpoint was trained on")
    parser.add_argument("--stack", choices=["encoder", "decoder"], default="decoder")
    parser.add_argument("--subset", default="valid", help="the split to sample (default valid)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="tokens per batch")
    parser.add_argument("--max-batches", type=int, default=20, help="batches of the sample (0: the whole split)")
    parser.add_argument("--out", default="contributions.json", help="where to write the scores (JSON)")
    args = parser.parse_args()

    import fairseq_layerdrop  # noqa: F401
    from fairseq_layerdrop.pruning.contribution import layer_contributions, save_contributions
    from fairseq_layerdrop.pruning.validation import load_checkpoint, validation_batches

    if not os.path.isfile(args.checkpoint):
        sys.exit(f"layer_contributions: no checkpoint at {args.checkpoint}")
    model, task = load_checkpoint(args.checkpoint, args.data)
    if not hasattr(model, args.stack) or not hasattr(getattr(model, args.stack), "layers"):
        sys.exit(f"layer_contributions: --stack {args.stack}: this model has no {args.stack}")
    batches = validation_batches(model, task, args.subset, args.max_tokens, args.max_batches)
    print(f"scoring the {args.stack}'s layers on {len(batches)} {args.subset} batches", flush=True)
    scores = layer_contributions(model, batches, args.stack)
    save_contributions(args.out, args.stack, scores, os.path.abspath(args.checkpoint))
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
    print("| layer | 1 - cos(input, output) | rank |\n|---:|---:|---:|")
    for i, score in enumerate(scores):
        print(f"| {i} | {score:.4f} | {ranked.index(i) + 1} |")
    print(f"wrote {args.out}; use --prune-strategy contribution:{args.out}")


if __name__ == "__main__":
    main()
