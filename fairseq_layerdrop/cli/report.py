"""``fairseq-layerdrop report``: merge depth sweeps of several models into one table and one plot (Fan et al. Fig. 2: LayerDrop vs baseline vs
a smaller model trained from scratch), and check the reproduction's targets on the numbers.

Each input is ``LABEL=path/to/sweep.csv`` as written by ``fairseq-layerdrop sweep``. A sweep with several
depths becomes one curve per strategy (``LABEL, strategy``); a sweep of a single depth (a model evaluated
at its full depth) becomes one marked point. Writes ``results.csv``, ``results.md`` and ``results.png``, only
once every input and target has been checked. A sweep of another metric than ``--metric`` is refused (the
sweep's ``metric`` column, or for a sweep written before it had one, the header of the ``sweep.md`` beside it).

    fairseq-layerdrop report --out DIR --metric perplexity "LayerDrop=a/sweep.csv" "baseline=b/sweep.csv" \\
        "4 layers from scratch=c/sweep.csv" --check-lm LayerDrop baseline "4 layers from scratch" --full 8 --half 4
    fairseq-layerdrop report --out DIR --metric BLEU "LayerDrop=a/sweep.csv" "baseline=b/sweep.csv" \\
        --check-mt LayerDrop baseline --full 6 --half 3
    fairseq-layerdrop report --out DIR --metric perplexity "LR-Drop=a/sweep.csv" "LayerDrop=b/sweep.csv" \\
        "LR-Drop, half updates=c/sweep.csv" --check-lrdrop LR-Drop LayerDrop --equal-compute "LR-Drop, half updates" \\
        --full 8 --half 4

Targets (from the paper's claims; issue 7): LM, pruned to half depth with every-other, LayerDrop within 15% of its
own full-depth perplexity, the baseline at least 3x its own, LayerDrop no worse than the small model from
scratch; LayerDrop at full depth within 5% of the baseline. MT: pruned LayerDrop keeps >= 90% of its BLEU.
LR-Drop (issue 14; LM): its full-depth perplexity below the LayerDrop model's (same updates, and with
--equal-compute the model of half the updates too), pruned to half depth with every-other within 10% of its own
full depth and below the LayerDrop model's at that depth. Depth distillation (issue 24; ``--check-distill``,
repeatable; perplexity, or BLEU/ROUGE where the ratios are inverted so that above 1 is worse): at full depth within
2% of the baseline, pruned to half depth within 5% of the small model from scratch and within 10% of its own full
depth, and better than the LayerDrop model at every depth both were swept at.
"""

import argparse
import csv
import math
import os
import sys

from fairseq_layerdrop.cli.sweep import pyplot, quality_axis

METRICS = ["perplexity", "BLEU", "ROUGE-1", "ROUGE-2", "ROUGE-L"]


def read_sweep(path):
    if not os.path.isfile(path):
        sys.exit(f"fairseq-layerdrop report: no sweep at {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"fairseq-layerdrop report: {path} has no rows")
    missing = [c for c in ("depth", "strategy", "kept", "parameters", "quality") if c not in rows[0]]
    if missing:
        sys.exit(f"fairseq-layerdrop report: {path} is not a sweep.csv of fairseq-layerdrop sweep "
                 f"(no column {', '.join(missing)})")
    for number, row in enumerate(rows, 2):
        try:
            row["depth"], row["quality"] = int(row["depth"]), float(row["quality"])
        except (TypeError, ValueError):
            sys.exit(f"fairseq-layerdrop report: {path} line {number}: depth {row['depth']!r} and quality "
                     f"{row['quality']!r} must be numbers")
    return rows


def sweep_metric(path, rows):
    """What a sweep's numbers are: its ``metric`` column, or the header of the ``sweep.md`` written beside a
    ``sweep.csv``; None when neither says."""
    metrics = sorted({row.get("metric") for row in rows} - {None, ""})
    if len(metrics) > 1:
        sys.exit(f"fairseq-layerdrop report: {path} mixes metrics ({', '.join(metrics)}); give one sweep a metric")
    if metrics:
        return metrics[0]
    table = os.path.join(os.path.dirname(path), "sweep.md")
    if os.path.basename(path) == "sweep.csv" and os.path.isfile(table):
        with open(table) as f:
            cells = [cell.strip() for cell in f.readline().strip().strip("|").split("|")]
        if len(cells) == 6 and cells[:4] == ["depth", "strategy", "kept layers", "parameters"]:
            return cells[4]
    return None


def check_metrics(specs, models, metric):
    """Refuse a sweep whose numbers are another metric than ``--metric``."""
    for spec, (label, rows) in zip(specs, models.items()):
        path = spec.rpartition("=")[2]
        measured = sweep_metric(path, rows)
        if measured is not None and measured != metric:
            sys.exit(f"fairseq-layerdrop report: --metric {metric}, but {path} ({label}) holds {measured} "
                     f"scores; give --metric {measured}, or sweeps of {metric}")


def parse_inputs(specs):
    models = {}
    for spec in specs:
        label, sep, path = spec.rpartition("=")
        if not sep or not label:
            sys.exit(f"fairseq-layerdrop report: expected LABEL=path/sweep.csv, got {spec!r}")
        if label in models:
            sys.exit(f"fairseq-layerdrop report: the label {label!r} is given twice; give each sweep its own label")
        models[label] = read_sweep(path)
    return models


def quality(models, label, depth, strategy="every-other"):
    if label not in models:
        sys.exit(f"fairseq-layerdrop report: no model labelled {label!r}; have {', '.join(models)}")
    for row in models[label]:
        if row["depth"] == depth and row["strategy"] == strategy:
            return row["quality"]
    sys.exit(f"fairseq-layerdrop report: {label!r} has no {strategy} result at depth {depth}")


def lm_targets(models, layerdrop, baseline, scratch, full, half):
    """The LM targets as (statement, measured, wanted, met)."""
    ld_full, ld_half = quality(models, layerdrop, full), quality(models, layerdrop, half)
    base_full, base_half = quality(models, baseline, full), quality(models, baseline, half)
    small = quality(models, scratch, half)
    return [
        (f"LayerDrop pruned {full}->{half} / its full depth (ppl)", ld_half / ld_full, "<= 1.15", ld_half / ld_full <= 1.15),
        (f"baseline pruned {full}->{half} / its full depth (ppl)", base_half / base_full, ">= 3", base_half / base_full >= 3),
        (f"LayerDrop pruned to {half} / {half} layers from scratch (ppl)", ld_half / small, "<= 1", ld_half <= small),
        (f"LayerDrop / baseline at full depth (ppl)", ld_full / base_full, "<= 1.05", ld_full / base_full <= 1.05),
    ]


def lrdrop_targets(models, lrdrop, layerdrop, full, half, equal_compute=None):
    """LR-Drop's LM targets (issue 14) as (statement, measured, wanted, met): lower perplexity is better."""
    lr_full, lr_half = quality(models, lrdrop, full), quality(models, lrdrop, half)
    ld_full, ld_half = quality(models, layerdrop, full), quality(models, layerdrop, half)
    checks = [(f"LR-Drop / LayerDrop at full depth, same updates (ppl)", lr_full / ld_full, "< 1", lr_full < ld_full)]
    if equal_compute:
        eq_full = quality(models, equal_compute, full)
        checks.append((f"LR-Drop, half the updates / LayerDrop at full depth, equal compute (ppl)", eq_full / ld_full,
                       "< 1", eq_full < ld_full))
    checks += [
        (f"LR-Drop pruned {full}->{half} / its full depth (ppl)", lr_half / lr_full, "<= 1.10", lr_half / lr_full <= 1.10),
        (f"LR-Drop / LayerDrop pruned to {half} (ppl)", lr_half / ld_half, "< 1", lr_half < ld_half),
    ]
    return checks


def distill_targets(models, distill, baseline, scratch, layerdrop, full, half, metric="perplexity"):
    """Depth distillation's targets (issue 24) as (statement, measured, wanted, met). For perplexity (lower is
    better) the ratios are distill / other; for BLEU or ROUGE (higher is better) they are other / distill, so that in
    both cases a ratio above 1 means distillation is worse by that factor. The last target compares the every-other
    curves at every depth both models were swept at."""
    lower = metric == "perplexity"

    def worse(a, b):  # how many times worse a is than b
        return a / b if lower else share(b, a)

    d_full, d_half = quality(models, distill, full), quality(models, distill, half)
    base_full, small = quality(models, baseline, full), quality(models, scratch, half)
    depths = sorted({r["depth"] for r in models[distill] if r["strategy"] == "every-other"}
                    & {r["depth"] for r in models[layerdrop] if r["strategy"] == "every-other"})
    worst = max(worse(quality(models, distill, d), quality(models, layerdrop, d)) for d in depths)
    unit = "ppl" if lower else f"{metric}, other / {distill}"
    checks = [
        (f"{distill} / {baseline} at full depth ({unit})", worse(d_full, base_full), "<= 1.02"),
        (f"{distill} pruned {full}->{half} / {half} layers from scratch ({unit})", worse(d_half, small), "<= 1.05"),
        (f"{distill} pruned {full}->{half} / its full depth ({unit})", worse(d_half, d_full), "<= 1.10"),
        (f"{distill} / {layerdrop}, every-other, the worst of depths {depths[0]}..{depths[-1]} ({unit})", worst, "< 1"),
    ]
    bounds = {"<= 1.02": lambda x: x <= 1.02, "<= 1.05": lambda x: x <= 1.05, "<= 1.10": lambda x: x <= 1.10,
              "< 1": lambda x: x < 1}
    return [(name, measured, wanted, bounds[wanted](measured)) for name, measured, wanted in checks]


def share(part, whole):
    """``part / whole``, or NaN (a target that cannot be met) when the full-depth score is 0."""
    return part / whole if whole else float("nan")


def mt_targets(models, layerdrop, baseline, full, half, metric="BLEU"):
    ld = share(quality(models, layerdrop, half), quality(models, layerdrop, full))
    base = share(quality(models, baseline, half), quality(models, baseline, full))
    return [
        (f"LayerDrop pruned {full}->{half}: share of its full {metric}", ld, ">= 0.90", ld >= 0.90),
        (f"baseline pruned {full}->{half}: share of its full {metric}", base, f"< {ld:.3f} (far less)", base < ld),
    ]


def plot(models, metric, path, title):
    """Quality against kept depth, a line per (model, strategy). When perplexities span more than 10x (a collapsed
    baseline), a second panel zooms on the range within 2x of the best point, where the curves that did not
    collapse are told apart."""
    plt = pyplot()
    values = [r["quality"] for rows in models.values() for r in rows]
    zoom = metric == "perplexity" and max(values) > 10 * min(values)
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(13 if zoom else 7, 4.8), squeeze=False)
    styles = {"every-other": "-", "top": "--", "bottom": ":", "symmetric": "-.", "search": (0, (5, 1, 1, 1)),
              "learned": (0, (1, 1))}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(models) > len(colors):  # past the 10 colours of the default cycle two models would share one
        colors = [plt.get_cmap("tab20")(i) for i in range(20)]
    for ax in axes[0]:
        for n, (label, rows) in enumerate(models.items()):
            color = colors[n % len(colors)]
            if len({r["depth"] for r in rows}) == 1:
                ax.plot([rows[0]["depth"]], [rows[0]["quality"]], marker="*", markersize=14, linestyle="none",
                        color=color, label=label)
                continue
            for strategy in dict.fromkeys(r["strategy"] for r in rows):
                points = sorted((r["depth"], r["quality"]) for r in rows if r["strategy"] == strategy)
                ax.plot([d for d, _ in points], [q for _, q in points], marker="o", markersize=4, color=color,
                        linestyle=styles.get(strategy, "-"), label=f"{label}, {strategy}")
        ax.set_xlabel("kept layers (pruned at test time, no finetuning)")
        ax.grid(True, alpha=0.3)
    quality_axis(axes[0][0], metric)
    axes[0][0].set_title(title, fontsize=10)
    if zoom:
        axes[0][1].set_ylim(0.95 * min(values), 2 * min(values))
        axes[0][1].set_ylabel(f"{metric} (linear, lower is better)")
        axes[0][1].set_title("the same, within 2x of the best point", fontsize=10)
    if len(models) > 6:  # many lines: the legend goes beside the plot, not over the curves
        axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", help="LABEL=path/to/sweep.csv")
    parser.add_argument("--out", required=True, help="directory for results.csv, results.md, results.png")
    parser.add_argument("--metric", choices=METRICS, required=True,
                        help="what the sweeps' numbers are (each sweep.csv says; a sweep of another is refused)")
    parser.add_argument("--title", default="")
    parser.add_argument("--check-lm", nargs=3, metavar=("LAYERDROP", "BASELINE", "SCRATCH"),
                        help="labels of the models for the LM targets")
    parser.add_argument("--check-mt", nargs=2, metavar=("LAYERDROP", "BASELINE"), help="labels for the MT targets")
    parser.add_argument("--check-lrdrop", nargs=2, metavar=("LRDROP", "LAYERDROP"),
                        help="labels for LR-Drop's LM targets (with or without --check-lm)")
    parser.add_argument("--equal-compute", metavar="LABEL",
                        help="with --check-lrdrop: the LR-Drop model of half the updates (the LayerDrop model's compute)")
    parser.add_argument("--check-distill", nargs=4, action="append", metavar=("DISTILL", "BASELINE", "SCRATCH", "LAYERDROP"),
                        help="labels for depth distillation's targets (perplexity or BLEU; repeatable: e.g. same updates and equal compute)")
    parser.add_argument("--full", type=int, help="full depth for the targets")
    parser.add_argument("--half", type=int, help="pruned depth for the targets")
    args = parser.parse_args(argv)
    checking = args.check_lm or args.check_mt or args.check_lrdrop or args.check_distill
    if checking and not (args.full and args.half):
        parser.error("--check-lm/--check-mt/--check-lrdrop/--check-distill need --full and --half")
    if (args.full or args.half) and not checking:
        parser.error("--full and --half are the depths of the targets: give --check-lm, --check-mt, --check-lrdrop "
                     "or --check-distill")
    if args.equal_compute and not args.check_lrdrop:
        parser.error("--equal-compute names a model of the LR-Drop targets: give --check-lrdrop with it")
    if args.check_mt and args.check_lrdrop:
        parser.error("--check-lrdrop checks perplexities (an LM); --check-mt checks BLEU: give one of them")
    if (args.check_lm or args.check_lrdrop) and args.metric != "perplexity":
        parser.error(f"--check-lm and --check-lrdrop check perplexities: give --metric perplexity, not {args.metric}")
    if args.check_mt and args.metric == "perplexity":
        parser.error("--check-mt checks the share of BLEU (or ROUGE) kept: give --metric BLEU, not perplexity")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out {args.out} is a file; give a directory for results.csv, results.md, results.png")
    from fairseq_layerdrop.pruning.export import blocking_file

    if blocking_file(args.out):
        parser.error(f"--out {args.out}: {blocking_file(args.out)} is a file, not a directory")
    models = parse_inputs(args.sweeps)
    check_metrics(args.sweeps, models, args.metric)

    rows = [{"model": label, **{k: r[k] for k in ("depth", "strategy", "kept", "parameters", "quality")}}
            for label, sweep in models.items() for r in sweep]
    # one wide table: a row per depth, a column per (model, strategy)
    columns = list(dict.fromkeys((r["model"], r["strategy"]) for r in rows))
    value = {(r["model"], r["strategy"], r["depth"]): r["quality"] for r in rows}
    depths = sorted({r["depth"] for r in rows}, reverse=True)
    lines = ["| depth | " + " | ".join(f"{m}, {s}" for m, s in columns) + " |",
             "|---:|" + "---:|" * len(columns)]
    for depth in depths:
        cells = [f"{value[(m, s, depth)]:.2f}" if (m, s, depth) in value else "" for m, s in columns]
        lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)

    checks = []
    if args.check_lm:
        checks += lm_targets(models, *args.check_lm, args.full, args.half)
    if args.check_mt:
        checks += mt_targets(models, *args.check_mt, args.full, args.half, args.metric)
    if args.check_lrdrop:
        checks += lrdrop_targets(models, *args.check_lrdrop, args.full, args.half, args.equal_compute)
    for labels in args.check_distill or []:
        checks += distill_targets(models, *labels, args.full, args.half, args.metric)
    target_lines = []
    if checks:
        target_lines = ["| target | measured | wanted | met |", "|---|---:|---:|---|"]
        target_lines += [f"| {name} | {'undefined (0 at full depth)' if math.isnan(measured) else f'{measured:.3f}'} "
                         f"| {wanted} | {'yes' if met else 'no'} |" for name, measured, wanted, met in checks]
    os.makedirs(args.out, exist_ok=True)  # only now: every refusal above leaves nothing behind
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "depth", "strategy", "kept", "parameters", "quality"])
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(f"{args.metric}\n\n{table}\n" + ("\n" + "\n".join(target_lines) + "\n" if target_lines else ""))
    plot(models, args.metric, os.path.join(args.out, "results.png"), args.title)
    print(f"{args.metric} by kept depth\n{table}")
    if target_lines:
        print("\n" + "\n".join(target_lines))
    print(f"wrote {args.out}/results.csv, results.md and results.png")


if __name__ == "__main__":
    main()
