"""``fairseq-layerdrop contributions``: score each layer's contribution on a data sample (Sajjad et al. arXiv 2004.03844).

A layer's score is the mean over tokens of 1 - cos(layer input, layer output): a layer that
changes its input little contributes little. Works on any checkpoint, including models trained
without LayerDrop (fairseq's own ``transformer`` / ``transformer_lm``).

    fairseq-layerdrop contributions CKPT DATA --stack decoder --out scores.json
    fairseq-eval-lm DATA --user-dir ... --task language_modeling_layerdrop --path CKPT \\
        --prune-to 4 --prune-strategy contribution:scores.json
"""

import argparse
import os
import sys

from fairseq_layerdrop.pruning.contribution import existing_result, layer_contributions, save_contributions
from fairseq_layerdrop.cli.data_check import load_checked
from fairseq_layerdrop.pruning.validation import add_scoring_arguments


def main(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scoring_arguments(parser, max_batches=20)
    parser.add_argument("--out", default="contributions.json", help="where to write the scores (JSON)")
    args = parser.parse_args(argv)

    try:
        existing_result(args.out)  # an --out that cannot be written is refused before the scoring
        model, _, batches = load_checked(args)
    except ValueError as error:
        sys.exit(f"fairseq-layerdrop contributions: {error}")
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
