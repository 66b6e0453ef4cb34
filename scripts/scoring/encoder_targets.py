"""The encoder targets of issue 25 (Fan et al., arXiv 1909.11556, RoBERTa; Sajjad et al., arXiv 2004.03844), checked on
the mean accuracy over fine-tuning seeds in a ``results.csv`` of ``scripts.scoring.finetune_results``:

- the LayerDrop model pruned to HALF layers (every-other) is at least as good as the HALF-layer model pre-trained from
  scratch, and as the best strategy of dropping layers of the model pre-trained without LayerDrop;
- top-layer dropping of the model without LayerDrop keeps at least 90% of its full-depth accuracy;
- the LayerDrop model at full depth is within 1 point of the model without LayerDrop.

One row per task of the chosen subset (``--subset test``: the tasks named "TASK, test"); written as Markdown to stdout
and to ``--out``.

    python -m scripts.scoring.encoder_targets results.csv --layerdrop "LayerDrop p=0.5" --baseline "baseline p=0" \\
        --scratch "4 layers from scratch" --full 8 --half 4 --subset test --out targets.md
"""

import argparse
import csv
import statistics
import sys
from collections import defaultdict

from scripts.scoring.finetune_results import FULL


def mean_scores(path, subset):
    """{task: {(model, strategy, depth): mean headline value}} of the rows whose task ends with ", SUBSET"."""
    values = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["headline"] != "True":
                continue
            task, _, sub = row["task"].rpartition(", ")
            if sub == subset:
                values[task][row["model"], row["strategy"], int(row["depth"])].append(float(row["value"]))
    return {task: {key: statistics.mean(v) for key, v in by_key.items()} for task, by_key in values.items()}


def checks(scores, layerdrop, baseline, scratch, full, half):
    """[(target, measured, wanted, met)] for one task's mean scores; a missing model or depth is an error, a missing
    top-dropping run is reported as not run (met None)."""
    def get(model, strategy, depth):
        try:
            return scores[model, strategy, depth]
        except KeyError:
            raise SystemExit(f"encoder_targets: no runs of '{model}', {strategy}, depth {depth}") from None

    pruned = get(layerdrop, "every-other", half)
    small = get(scratch, FULL, half)
    strategies = {s: v for (m, s, d), v in scores.items() if m == baseline and d == half and s != FULL}
    if not strategies:
        raise SystemExit(f"encoder_targets: no pruned runs of '{baseline}' at depth {half}")
    best = max(strategies, key=strategies.get)
    base_full, top = get(baseline, FULL, full), strategies.get("top")
    ld_full = get(layerdrop, FULL, full)
    return [
        (f"LayerDrop {full}->{half} every-other - {half} layers from scratch", f"{pruned - small:+.1f}", ">= 0",
         pruned >= small),
        (f"LayerDrop {full}->{half} every-other - baseline's best drop ({best})", f"{pruned - strategies[best]:+.1f}",
         ">= 0", pruned >= strategies[best]),
        (f"baseline top-dropped {full}->{half} / its full depth",
         "not run" if top is None else f"{top / base_full:.3f}", ">= 0.90", None if top is None else top >= 0.9 * base_full),
        (f"LayerDrop at full depth - baseline at full depth", f"{ld_full - base_full:+.1f}", ">= -1",
         ld_full >= base_full - 1),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="results.csv of scripts.scoring.finetune_results")
    parser.add_argument("--layerdrop", required=True, help="model label of the LayerDrop encoder")
    parser.add_argument("--baseline", required=True, help="model label of the encoder pre-trained without LayerDrop")
    parser.add_argument("--scratch", required=True, help="model label of the small encoder pre-trained from scratch")
    parser.add_argument("--full", type=int, required=True, help="the deep encoders' layers")
    parser.add_argument("--half", type=int, required=True, help="the depth they are pruned to (the small encoder's)")
    parser.add_argument("--subset", default="test", help="the subset the checks read (test or valid)")
    parser.add_argument("--out", help="also write the Markdown here")
    args = parser.parse_args(argv)
    by_task = mean_scores(args.results, args.subset)
    if not by_task:
        sys.exit(f"encoder_targets: no '{args.subset}' rows in {args.results}")
    lines = [f"Targets on the mean {args.subset} accuracy over seeds:", "",
             "| task | target | measured | wanted | met |", "|---|---|---:|---:|---|"]
    for task, scores in by_task.items():
        for target, measured, wanted, met in checks(scores, args.layerdrop, args.baseline, args.scratch,
                                                    args.full, args.half):
            lines.append(f"| {task} | {target} | {measured} | {wanted} | {'-' if met is None else 'yes' if met else 'no'} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
