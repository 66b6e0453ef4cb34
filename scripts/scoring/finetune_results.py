"""Dev scores of sentence-prediction fine-tuning runs -> one CSV, one Markdown table (mean and spread over seeds), one plot.

Each run is a directory holding ``run.json`` (written by the recipe) and ``train.log`` (fairseq-train's output
with ``--log-format json``). ``run.json``::

    {"task": "RTE", "model": "roberta", "depth": 6, "strategy": "every-other", "seed": 1,
     "metrics": ["accuracy"], "select": "accuracy", "maximize": true, "subsets": {"valid": "RTE"}}

``strategy`` is ``full`` for a run of the unpruned checkpoint (its point starts each strategy's curve in the
plot). ``metrics`` are fairseq's validation keys to report (the first is the task's headline: accuracy, mcc, f1, pearson,
...), ``select``/``maximize`` the ``--best-checkpoint-metric`` of the run: the epoch it chooses on the first subset
(what ``checkpoint_best.pt`` holds) gives every number of that run, for each subset (MNLI: ``{"valid": "MNLI-m",
"valid1": "MNLI-mm"}``). Writes ``results.csv`` (a row per run, subset and metric), ``results.md`` (a row per model,
strategy and depth; a column per task: the headline's mean ± sample standard deviation over seeds, and the seeds'
minimum and maximum) and ``results.png`` (headline against depth, a panel per task, a line per model and strategy).

    python -m scripts.scoring.finetune_results RUNS_DIR [RUNS_DIR...] --out DIR [--title TITLE]
"""

import argparse
import csv
import json
import math
import os
import statistics
import sys
from collections import defaultdict


FULL = "full"  # the strategy of a run at the checkpoint's own depth (nothing pruned)


class ResultsError(ValueError):
    pass


def valid_records(log_path, subsets=("valid",)):
    """{subset: [record, ...]} of the ``| SUBSET | {json}`` validation lines of a fairseq-train log, per epoch."""
    records = defaultdict(list)
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            head, _, payload = line.partition(" | {")
            subset = head.rsplit(" | ", 1)[-1].strip()
            if not payload or subset not in subsets:
                continue
            try:
                record = json.loads("{" + payload)
            except json.JSONDecodeError:
                continue
            prefix = subset + "_"
            values = {k[len(prefix):]: _number(v) for k, v in record.items() if k.startswith(prefix)}
            records[subset].append({"epoch": _number(record.get("epoch")), **values})
    return records


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def read_run(run_dir):
    """The rows of one run: one per subset and metric, at the epoch its best-checkpoint metric chooses."""
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    log = os.path.join(run_dir, "train.log")
    if not os.path.isfile(log):
        raise ResultsError(f"{run_dir}: no train.log")
    subsets = run.get("subsets") or {"valid": run["task"]}
    records = valid_records(log, tuple(subsets))
    first = next(iter(subsets))
    if not records.get(first):
        raise ResultsError(f"{log}: no validation of the subset '{first}' (did the run finish?)")
    select, sign = run.get("select", "accuracy"), (1 if run.get("maximize", True) else -1)
    scores = [r.get(select) for r in records[first]]
    if not all(isinstance(s, float) for s in scores):
        raise ResultsError(f"{log}: the best-checkpoint metric '{select}' is missing from a validation line")
    # the first of equal scores, as fairseq keeps the first best checkpoint
    best = max(range(len(scores)), key=lambda i: (sign * scores[i] if not math.isnan(scores[i]) else -math.inf, -i))
    rows = []
    for subset, name in subsets.items():
        if len(records.get(subset, [])) != len(records[first]):
            raise ResultsError(f"{log}: subset '{subset}' was validated {len(records.get(subset, []))} times, "
                               f"'{first}' {len(records[first])} times")
        record = records[subset][best]
        for metric in run["metrics"]:
            if metric not in record:
                raise ResultsError(f"{log}: no '{metric}' in the validation of '{subset}' (keys: {sorted(record)})")
            rows.append({"task": name, "model": run["model"], "strategy": run.get("strategy", ""),
                         "depth": int(run["depth"]), "seed": run.get("seed", ""), "metric": metric,
                         "value": record[metric], "epoch": int(record.get("epoch", best + 1)),
                         "updates": int(record.get("num_updates", 0)),
                         "headline": metric == run["metrics"][0], "run": os.path.basename(run_dir.rstrip("/"))})
    return rows


def find_runs(root):
    runs = []
    for directory, _, files in os.walk(root):
        if "run.json" in files:
            runs.append(directory)
    return sorted(runs)


def summarize(rows):
    """{(model, strategy, depth): {task: (metric, [values])}} of the headline metric, in first-seen order."""
    table = {}
    for row in rows:
        if row["headline"]:
            key = (row["model"], row["strategy"], row["depth"])
            table.setdefault(key, {}).setdefault(row["task"], (row["metric"], []))[1].append(row["value"])
    return table


def cell(values):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "nan"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return (f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} "
            f"[{min(values):.1f}, {max(values):.1f}]")


def markdown(title, rows):
    table = summarize(rows)
    tasks = []
    for row in rows:
        if row["headline"] and row["task"] not in tasks:
            tasks.append(row["task"])
    metric_of = {row["task"]: row["metric"] for row in rows if row["headline"]}
    seeds = sorted({str(row["seed"]) for row in rows})
    lines = [f"## {title}", "",
             f"Scores at the epoch each run's best-checkpoint metric chose on its first (dev) set; over {len(seeds)} seed(s) "
             f"({', '.join(seeds)}): mean ± sample standard deviation [min, max].", "",
             "| model | strategy | depth | " + " | ".join(f"{t} ({metric_of[t]})" for t in tasks) + " |",
             "|---|---|---:|" + "---:|" * len(tasks)]
    for (model, strategy, depth), by_task in sorted(table.items(), key=lambda item: (item[0][0], -item[0][2], item[0][1])):
        lines.append(f"| {model} | {strategy} | {depth} | "
                     + " | ".join(cell(by_task[t][1]) if t in by_task else "" for t in tasks) + " |")
    return "\n".join(lines) + "\n"


def plot(path, title, rows):
    import logging

    for name in ("matplotlib", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summarize(rows)
    tasks = list(dict.fromkeys(t for by_task in table.values() for t in by_task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        curves, full = defaultdict(list), defaultdict(list)
        for (model, strategy, depth), by_task in table.items():
            if task in by_task:
                values = [v for v in by_task[task][1] if not math.isnan(v)]
                if values:
                    point = (depth, statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
                    (full[model] if strategy == FULL else curves[model, strategy]).append(point)
        for model, points in full.items():  # the unpruned model starts every strategy's curve of its model
            strategies = [key for key in curves if key[0] == model]
            for key in strategies or [(model, FULL)]:
                curves[key] += points
        for (model, strategy), points in curves.items():
            points.sort()
            xs, ys, errs = zip(*points)
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=f"{model}, {strategy}" if strategy else model)
        ax.xaxis.get_major_locator().set_params(integer=True)
        metric = next(by_task[task][0] for by_task in table.values() if task in by_task)
        ax.set_title(task)
        ax.set_xlabel("encoder layers kept")
        ax.set_ylabel(metric)  # the panel title names the subset (dev or test)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="directories searched (any depth) for run directories (run.json + train.log)")
    parser.add_argument("--out", required=True, help="directory for results.csv, results.md, results.png")
    parser.add_argument("--title", default="Fine-tuning results")
    args = parser.parse_args(argv)
    runs = [run for root in args.runs for run in find_runs(root)]
    if not runs:
        sys.exit(f"finetune_results: no run.json below {' '.join(args.runs)}")
    try:
        rows = [row for run in runs for row in read_run(run)]
    except (ResultsError, KeyError, json.JSONDecodeError) as error:
        sys.exit(f"finetune_results: {error}")
    os.makedirs(args.out, exist_ok=True)
    fields = ["task", "model", "strategy", "depth", "seed", "metric", "value", "epoch", "updates", "headline", "run"]
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(args.title, rows)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    plot(os.path.join(args.out, "results.png"), args.title, rows)
    print(text)
    print(f"{len(runs)} runs; wrote {args.out}/results.csv, results.md, results.png")


if __name__ == "__main__":
    main()
