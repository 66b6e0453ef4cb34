"""``fairseq-layerdrop sweep``: one checkpoint evaluated at every depth with each pruning strategy (Fan et al.
Fig. 2).

For a language model, perplexity from ``fairseq-eval-lm``; for a masked LM (RoBERTa, its encoder), the masked
tokens' perplexity from ``fairseq-validate`` (its ``ppl``, 2 ** its loss); for a translation model, BLEU by
sacrebleu (or ROUGE, ``--metric``) on ``fairseq-generate``'s detokenized output. Each point is the
plugin's pruning at load time (``--task *_layerdrop --*-layers-to-keep``), without finetuning. Writes ``sweep.csv``
(with a ``metric`` column, which ``fairseq-layerdrop report`` checks), ``sweep.md`` and ``sweep.png`` (quality
against kept depth, one line per strategy) to ``--out``, once every point is scored.

    fairseq-layerdrop sweep CKPT DATA --out sweep/ [--depths 1,2,4,8] [--strategies every-other,top]
    fairseq-layerdrop sweep CKPT DATA --stack decoder --fairseq-args "--beam 4 --lenpen 0.6"

Options after ``--fairseq-args`` go to every fairseq command (e.g. ``--tokens-per-sample 512``,
``--remove-bpe``).
"""

import argparse
import csv
import os
import re
import shlex
import subprocess
import sys
import time

from fairseq_layerdrop.cli.in_process import PLUGIN

BIN = os.path.dirname(sys.executable)


def device_args():
    """``--cpu`` unless torch sees a GPU (fairseq then uses it)."""
    import torch

    return [] if torch.cuda.is_available() else ["--cpu"]


def evaluate_lm(checkpoint, data, keep_args, args):
    cmd = [os.path.join(BIN, "fairseq-eval-lm"), data, "--path", checkpoint, "--user-dir", PLUGIN, *device_args(),
           "--task", "language_modeling_layerdrop", "--gen-subset", args.subset, *keep_args, *args.extra]
    output = run(cmd)
    evaluated = re.search(r"Evaluated ([0-9,]+) tokens", output)
    if evaluated and int(evaluated.group(1).replace(",", "")) == 0:  # fairseq then reports perplexity 1.00
        sys.exit(f"fairseq-layerdrop sweep: fairseq-eval-lm evaluated 0 tokens of {args.subset} (it skips blocks "
                 f"longer than the model's positions; its --tokens-per-sample is 1024 unless given): pass "
                 f"--fairseq-args \"--tokens-per-sample N\" with the N the model was trained with; nothing was written")
    return float(re.search(r"Perplexity: ([0-9.]+)", output).group(1))


def evaluate_masked_lm(checkpoint, data, keep_args, args):
    cmd = [os.path.join(BIN, "fairseq-validate"), data, "--path", checkpoint, "--user-dir", PLUGIN, *device_args(),
           "--task", "masked_lm_layerdrop", "--valid-subset", args.subset, "--max-tokens", "4096",
           "--log-format", "simple", *keep_args, *args.extra]
    output = run(cmd)
    scores = re.search(rf"valid on '{re.escape(args.subset)}' subset \| loss [0-9.]+ \| ppl ([0-9.]+)", output)
    if not scores:
        sys.exit(f"fairseq-layerdrop sweep: fairseq-validate printed no loss for {args.subset} (nothing was written; "
                 f"to see its whole log, run: {shlex.join(cmd)})")
    return float(scores.group(1))


def evaluate_translation(checkpoint, data, keep_args, args):
    import sacrebleu

    cmd = [os.path.join(BIN, "fairseq-generate"), data, "--path", checkpoint, "--user-dir", PLUGIN, *device_args(),
           "--task", "translation_layerdrop", "--gen-subset", args.subset, "--batch-size", "64",
           "--required-batch-size-multiple", "1", *keep_args, *args.extra]
    output = run(cmd)
    hyps, refs = {}, {}
    for line in output.splitlines():
        if line.startswith("D-"):
            idx, _, text = line[2:].split("\t", 2)
            hyps[int(idx)] = text
        elif line.startswith("T-"):
            idx, text = line[2:].split("\t", 1)
            refs[int(idx)] = text
    ids = sorted(refs)
    if not ids or set(ids) != set(hyps):
        sys.exit(f"fairseq-layerdrop sweep: fairseq-generate gave {len(hyps)} hypotheses for {len(ids)} references")
    if args.metric != "BLEU":  # ROUGE F1 x100 of summaries
        from fairseq_layerdrop.cli.text_scores import rouge

        return rouge([hyps[i] for i in ids], [refs[i] for i in ids])[
            {"ROUGE-1": "rouge1", "ROUGE-2": "rouge2", "ROUGE-L": "rougeL"}[args.metric]]
    return sacrebleu.corpus_bleu([hyps[i] for i in ids], [[refs[i] for i in ids]]).score


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:  # its error, not its whole log (fairseq prints its config first)
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        error = lines[-1] if lines else f"exit status {proc.returncode}"
        sys.exit(f"fairseq-layerdrop sweep: {os.path.basename(cmd[0])} failed: {error} (nothing was written; "
                 f"to see its whole log, run: {shlex.join(cmd)})")
    return proc.stdout + proc.stderr


def quality_axis(ax, metric):
    """Label the y axis; perplexity on a log scale with plain tick labels."""
    ax.set_ylabel(metric + (" (log scale, lower is better)" if metric == "perplexity" else " (higher is better)"))
    if metric == "perplexity":
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")
        # 1, 2, 3, 5 per decade: a range inside one decade (PTB's 165-630) still gets labelled ticks
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def strategy_label(strategy, strategies):
    """The strategy's name without its file (``search:a/search.json`` -> ``search``), unless two share the name."""
    name = strategy.partition(":")[0]
    return name if sum(s.partition(":")[0] == name for s in strategies) == 1 else strategy


def pyplot():
    """matplotlib's pyplot on the file backend, without its debug log.

    Importing fairseq sets the root logger to DEBUG (``fairseq/models/wav2vec/wav2vec2_classification.py`` calls
    ``logging.basicConfig(level=logging.DEBUG)``), so matplotlib and PIL would print about 150 debug lines."""
    import logging

    for name in ("matplotlib", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def language_flags(extra):
    """``-s`` / ``--source-lang`` and ``-t`` / ``--target-lang`` among the options for fairseq, or None."""
    found = {"source": None, "target": None}
    for i, arg in enumerate(extra):
        for side, names in (("source", ("-s", "--source-lang")), ("target", ("-t", "--target-lang"))):
            if arg in names and i + 1 < len(extra):
                found[side] = extra[i + 1]
            elif arg.startswith(names[1] + "="):
                found[side] = arg.split("=", 1)[1]
    return found["source"], found["target"]


def plot(rows, metric, path, title):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        points = sorted((r["depth"], r["quality"]) for r in rows if r["strategy"] == strategy)
        ax.plot([d for d, _ in points], [q for _, q in points], marker="o", label=strategy)
    ax.set_xlabel("kept layers")
    quality_axis(ax, metric)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("data", help="the binarized data directory the checkpoint was trained on")
    parser.add_argument("--out", default="sweep", help="directory for sweep.csv, sweep.md, sweep.png")
    parser.add_argument("--depths", help="comma-separated depths (default: every depth 1..N)")
    parser.add_argument("--strategies", default="every-other,top,bottom", help="comma-separated strategy names")
    parser.add_argument("--stack", choices=["both", "encoder", "decoder"], default="both",
                        help="translation models: which stack to prune (both: the same depth in each); a language "
                             "model's decoder and a masked LM's encoder are swept")
    parser.add_argument("--subset", default="valid", help="the split to evaluate (default valid)")
    parser.add_argument("--metric", choices=["BLEU", "ROUGE-1", "ROUGE-2", "ROUGE-L"],
                        help="translation models: sacreBLEU (default) or ROUGE F1 (summarization)")
    parser.add_argument("--fairseq-args", default="", help="extra options for every fairseq command")
    args = parser.parse_args(argv)
    args.extra = shlex.split(args.fairseq_args)

    import fairseq_layerdrop  # noqa: F401  (allow-lists plugin checkpoint classes)
    from fairseq_layerdrop.cli.data_check import MASKED_LM_TASKS, data_problem, task_config
    from fairseq_layerdrop.pruning import STRATEGIES, PruningError, kept_layers, prune_state_dict, stack_depth
    from fairseq_layerdrop.pruning.export import blocking_file, model_config, read_checkpoint
    from fairseq_layerdrop.pruning.state_dict import count_parameters

    if not os.path.isfile(args.checkpoint):
        sys.exit(f"fairseq-layerdrop sweep: no checkpoint at {args.checkpoint}")
    if not os.path.isdir(args.data):
        sys.exit(f"fairseq-layerdrop sweep: DATA {args.data} is not a directory: give the binarized data directory")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        sys.exit(f"fairseq-layerdrop sweep: --out {args.out} is a file; give a directory for sweep.csv, sweep.md, sweep.png")
    if blocking_file(args.out):
        sys.exit(f"fairseq-layerdrop sweep: --out {args.out}: {blocking_file(args.out)} is a file, not a directory")
    try:
        state = read_checkpoint(args.checkpoint)
        cfg = model_config(state)
    except PruningError as error:
        sys.exit(f"fairseq-layerdrop sweep: {error}")
    depths = {s: stack_depth(cfg, s) for s in ("encoder", "decoder") if stack_depth(cfg, s) is not None}
    kind = "lm" if "encoder" not in depths else "translation" if "decoder" in depths else "masked_lm"
    task = task_config(state).get("_name")
    if kind == "masked_lm" and task not in MASKED_LM_TASKS:
        sys.exit(f"fairseq-layerdrop sweep: this encoder-only model was trained with --task {task}, which the sweep "
                 f"cannot score (it scores masked LMs, --task masked_lm, by the masked tokens' perplexity): sweep the "
                 f"pre-trained masked-LM checkpoint, or export each depth (fairseq-layerdrop prune --prune-to R) and "
                 f"fine-tune it")
    swept = {"lm": ("language model", "decoder", "encoder"), "masked_lm": ("masked LM", "encoder", "decoder")}
    if kind in swept and args.stack == swept[kind][2]:
        name, stack, missing = swept[kind]
        sys.exit(f"fairseq-layerdrop sweep: --stack {missing}: this {name} has no {missing} (its {stack} is swept)")
    if kind in swept and args.metric is not None:
        sys.exit(f"fairseq-layerdrop sweep: --metric {args.metric} scores translations; a {swept[kind][0]} is scored "
                 f"by perplexity")
    stacks = [swept[kind][1]] if kind in swept else ["encoder", "decoder"] if args.stack == "both" else [args.stack]
    full = min(depths[s] for s in stacks)
    strategies = args.strategies.split(",")
    unknown = [s for s in strategies if s.partition(":")[0] not in STRATEGIES]
    if unknown:
        sys.exit(f"fairseq-layerdrop sweep: unknown strategies {unknown}; choose from {', '.join(sorted(STRATEGIES))}")
    try:
        wanted = [int(d) for d in args.depths.split(",")] if args.depths else list(range(1, full + 1))
        plans = [(depth, strategy, {s: kept_layers(strategy, depths[s], depth, stack=s, flag="--strategies",
                                                   state_dict=state["model"], cfg=cfg) for s in stacks})
                 for depth in wanted for strategy in strategies]
    except (PruningError, ValueError) as error:
        sys.exit(f"fairseq-layerdrop sweep: {error}")
    problem = data_problem(args.data, state, args.subset, "translation" if kind == "translation" else "lm",
                           *language_flags(args.extra))
    if problem:
        sys.exit(f"fairseq-layerdrop sweep: {problem}")

    metric = args.metric = args.metric or ("BLEU" if kind == "translation" else "perplexity")
    evaluate = {"lm": evaluate_lm, "masked_lm": evaluate_masked_lm, "translation": evaluate_translation}[kind]
    rows, cache, started = [], {}, time.time()
    for n, (depth, strategy, kept) in enumerate(plans, 1):
        key = tuple((s, tuple(k)) for s, k in kept.items())
        tic = time.time()
        if key not in cache:
            keep_args = [a for s, k in kept.items() for a in (f"--{s}-layers-to-keep", ",".join(map(str, k)))]
            cache[key] = evaluate(args.checkpoint, args.data, keep_args, args)
        pruned, _ = prune_state_dict(state["model"], cfg, kept)
        row = {"depth": depth, "strategy": strategy_label(strategy, strategies),
               "kept": " ".join(f"{s}:{','.join(map(str, k))}" for s, k in kept.items()),
               "parameters": count_parameters(pruned), "quality": round(cache[key], 4),
               "seconds": round(time.time() - tic, 2), "metric": metric}
        rows.append(row)
        print(f"[{n}/{len(plans)} {time.time() - started:6.1f}s] depth {depth} {row['strategy']:<12} {row['kept']:<30} "
              f"{metric} {row['quality']:.2f}", flush=True)

    fields = ["depth", "strategy", "kept", "parameters", "quality", "seconds", "metric"]  # what report reads
    os.makedirs(args.out, exist_ok=True)  # only now: a refused or failed sweep leaves no empty --out
    with open(os.path.join(args.out, "sweep.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"| depth | strategy | kept layers | parameters | {metric} | seconds |", "|---:|---|---|---:|---:|---:|"]
    lines += [f"| {r['depth']} | {r['strategy']} | {r['kept']} | {r['parameters']:,} | {r['quality']:.2f} | "
              f"{r['seconds']} |" for r in rows]
    with open(os.path.join(args.out, "sweep.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(rows, metric, os.path.join(args.out, "sweep.png"), os.path.basename(args.checkpoint))
    print("\n".join(lines))
    print(f"wrote {args.out}/sweep.csv, sweep.md and sweep.png")


if __name__ == "__main__":
    main()
