"""``fairseq-layerdrop search``: search on validation, the kept layers of a stack that give the best validation perplexity.

Fan et al. (arXiv 1909.11556) compare every-other pruning with choosing the kept layers by their
validation score. For each target depth R: every subset when C(N, R) <= --budget, otherwise a beam
search over removals (--beam 1: greedy) within the budget. Evaluation is in process: the checkpoint
is loaded once and each candidate runs the same modules with a different layer list.

    fairseq-layerdrop search CKPT DATA --stack decoder --keep 4 --out search/
    fairseq-layerdrop search CKPT DATA --keep 2,4,6 --budget 40 --beam 2

Writes search/search.csv (every evaluated candidate), search/search.json (the best list per stack
and depth, read by ``--prune-strategy search:search/search.json``) and prints the list, ready for
``--decoder-layers-to-keep``. The score is validation perplexity (translation: of the references,
teacher-forced; not BLEU).
"""

import argparse
import csv
import os
import sys
import time

from fairseq_layerdrop.pruning.validation import add_scoring_arguments, perplexity, running_layers


def main(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scoring_arguments(parser, max_batches=0)
    parser.add_argument("--keep", required=True, help="target depth(s) R, comma-separated")
    parser.add_argument("--budget", type=int, default=100, help="most evaluations per depth (default 100)")
    parser.add_argument("--beam", type=int, default=1, help="beam width of the search over removals (1: greedy)")
    parser.add_argument("--out", default="search", help="directory for search.csv and search.json")
    args = parser.parse_args(argv)

    from fairseq_layerdrop.cli.data_check import load_checked
    from fairseq_layerdrop.pruning import PruningError
    from fairseq_layerdrop.pruning.contribution import existing_result
    from fairseq_layerdrop.pruning.export import blocking_file
    from fairseq_layerdrop.pruning.search import check_search_result, save_search_result, search_kept_layers, search_plan

    try:
        depths = [int(k) for k in args.keep.split(",")]
    except ValueError:
        sys.exit(f"fairseq-layerdrop search: --keep takes comma-separated integers, got {args.keep!r}")
    started = time.time()
    try:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError(f"--out {args.out} is a file; give a directory for search.csv and search.json")
        if blocking_file(args.out):
            raise ValueError(f"--out {args.out}: {blocking_file(args.out)} is a file, not a directory")
        if os.path.isdir(args.out):
            existing_result(os.path.join(args.out, "search.json"), "--out")  # refused before the search, not after
        model, task, batches = load_checked(args)
    except ValueError as error:
        sys.exit(f"fairseq-layerdrop search: {error}")
    from fairseq_layerdrop.pruning.state_dict import stack_module

    num_layers = len(stack_module(model, args.stack).layers)
    try:  # every depth and the --out file, before any scoring or writing
        for keep in depths:
            search_plan(num_layers, keep, args.budget, args.beam)
        if os.path.isdir(args.out):
            check_search_result(os.path.join(args.out, "search.json"), args.stack, num_layers)
    except PruningError as error:
        sys.exit(f"fairseq-layerdrop search: {error}")
    print(f"loaded {args.checkpoint} ({args.stack}: {num_layers} layers) and {len(batches)} {args.subset} batches "
          f"in {time.time() - started:.1f}s; full depth: perplexity {perplexity(model, batches):.3f}", flush=True)

    def evaluate(kept):
        with running_layers(model, {args.stack: kept}):
            return perplexity(model, batches)

    os.makedirs(args.out, exist_ok=True)
    csv_path, json_path = os.path.join(args.out, "search.csv"), os.path.join(args.out, "search.json")
    new_csv = not os.path.exists(csv_path)
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["stack", "keep", "method", "step", "kept", "perplexity"])
        if new_csv:
            writer.writeheader()
        for keep in depths:
            try:
                best, candidates = search_kept_layers(num_layers, keep, evaluate, args.budget, args.beam,
                                                      progress=lambda line: print(line, flush=True))
            except PruningError as error:
                sys.exit(f"fairseq-layerdrop search: {error}")
            for c in candidates:
                writer.writerow({"stack": args.stack, "keep": keep, "method": c["method"], "step": c["step"],
                                 "kept": ",".join(map(str, c["kept"])), "perplexity": round(c["score"], 4)})
            f.flush()
            score = min(c["score"] for c in candidates if c["kept"] == best)
            save_search_result(json_path, args.stack, num_layers, keep, best, score, f"{args.subset} perplexity",
                               os.path.abspath(args.checkpoint))
            print(f"best {args.stack} layers at depth {keep}: {','.join(map(str, best))} ({args.subset} perplexity "
                  f"{score:.3f}, {len(candidates)} evaluations)\n  use: --{args.stack}-layers-to-keep "
                  f"{','.join(map(str, best))}   or   --prune-strategy search:{json_path}", flush=True)
    print(f"wrote {csv_path} and {json_path} ({time.time() - started:.1f}s)")


if __name__ == "__main__":
    main()
