"""A recipe's results beside the paper's numbers (Fan et al. 2019, arXiv 1909.11556), as Markdown.

Reads the scores of the full-depth evaluation (a JSON object of name -> number) and the depth sweep's
``sweep.csv`` (``fairseq-layerdrop sweep``), puts the paper's numbers beside them, prints the table
and writes it to ``--out``.

    python -m scripts.scoring.results_table --title "WMT16 En-De" --scores eval/scores.json \\
        --paper "compound-split BLEU=29.6" --sweep sweep/sweep.csv --paper-sweep "8=20.78" --out results.md
"""

import argparse
import csv
import json
import os
import sys


def pairs(items, what):
    out = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        if not sep:
            sys.exit(f"results_table: {what} {item!r}: write NAME=VALUE")
        out[key] = value
    return out


def table(title, scores, paper, note, sweep_rows, paper_sweep, sweep_metric):
    lines = [f"## {title}", ""]
    if note:
        lines += [note, ""]
    lines += ["| measure | this run | paper |", "|---|---:|---:|"]
    for name in list(scores) + [n for n in paper if n not in scores]:
        ours = scores.get(name)
        lines.append(f"| {name} | {'' if ours is None else f'{float(ours):.2f}'} | {paper.get(name, '')} |")
    if sweep_rows:
        lines += ["", f"Depth sweep (pruned at inference, no finetuning; {sweep_metric}):", "",
                  "| depth | strategy | kept layers | parameters | this run | paper |", "|---:|---|---|---:|---:|---:|"]
        for row in sweep_rows:
            paper_value = paper_sweep.get(f"{row['depth']}:{row['strategy']}", paper_sweep.get(row["depth"], ""))
            lines.append(f"| {row['depth']} | {row['strategy']} | {row['kept']} | {int(row['parameters']):,} | "
                         f"{float(row['quality']):.2f} | {paper_value} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--title", required=True)
    parser.add_argument("--scores", required=True, help="JSON object: measure name -> this run's number")
    parser.add_argument("--paper", nargs="*", default=[], help="NAME=VALUE: the paper's number for a measure")
    parser.add_argument("--note", default="", help="a line under the title (setup, caveats)")
    parser.add_argument("--sweep", help="sweep.csv of fairseq-layerdrop sweep")
    parser.add_argument("--sweep-metric", default="quality", help="what the sweep's numbers are")
    parser.add_argument("--paper-sweep", nargs="*", default=[], help="DEPTH=VALUE or DEPTH:STRATEGY=VALUE")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    with open(args.scores) as f:
        scores = json.load(f)
    rows = []
    if args.sweep:
        if not os.path.isfile(args.sweep):
            sys.exit(f"results_table: no sweep at {args.sweep}")
        with open(args.sweep, newline="") as f:
            rows = list(csv.DictReader(f))
    text = table(args.title, scores, pairs(args.paper, "--paper"), args.note, rows,
                 pairs(args.paper_sweep, "--paper-sweep"), args.sweep_metric)
    with open(args.out, "w") as f:
        f.write(text)
    print(text, end="")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
