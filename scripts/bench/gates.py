"""Overhead of learned layer gates and the gating criterion on training words/s, measured in one run.

The same 12-layer LM as ``scripts/bench/train.py`` (width 256, blocks of 512 tokens, 1,024 tokens per
step) with ``--decoder-layerdrop 0.5``, built as ``fairseq-train`` builds it, trained in this one
process by fairseq's own training step (``task.train_step``: forward, criterion, backward) plus
an Adam step, three ways that start from the same weights:

- plain: ``transformer_lm_layerdrop``, ``cross_entropy``;
- gated, frozen: ``--layer-gates``, ``gated_cross_entropy --gate-weight 0``: the gates stay uniform,
  so every step drops exactly the layers the plain model drops (checked); the difference is the
  cost of the gates and the criterion alone (rates, log-probability, estimator term, logging);
- gated, learning: the default ``--gate-weight``; its drops drift from the plain run's as the gates
  learn, so its speed is also shown per layer run.

The three take turns step by step (the same batch and update number for each), so that load from
other processes hits all alike; words/s is the median over steps after ``--warmup`` steps, and the
overhead is the median of the per-step time ratios of plain and frozen (paired, back to back). (Run
in process rather than as three ``fairseq-train`` commands: on a shared machine whole runs minutes
apart see different loads, while a few percent is what is measured.)

    python -m scripts.bench.gates                # about 5 minutes on 2 idle cores
    python -m scripts.bench.gates --steps 20
"""

import argparse
import statistics
import tempfile
import time

from scripts.bench.common import build_model, make_data, publish_report, train_args

class Adam:
    """torch's Adam with the ``backward`` that fairseq's ``train_step`` calls on its optimizer."""

    def __init__(self, params):
        import torch

        self.torch = torch.optim.Adam(params, lr=5e-4)

    def backward(self, loss):
        loss.backward()


CONFIGS = [  # label, model flags, gate weight (None: plain criterion)
    ("plain, cross_entropy", [], None),
    ("gated, frozen (--gate-weight 0)", ["--layer-gates"], 0.0),
    ("gated, learning (--gate-weight 0.1)", ["--layer-gates"], 0.1),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="measured steps per configuration (default 60)")
    parser.add_argument("--warmup", type=int, default=5, help="steps not measured (default 5)")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--tokens-per-sample", type=int, default=512)
    parser.add_argument("--out", default="bench_out", help="directory for bench_gates.md")
    args = parser.parse_args()

    import torch
    from fairseq.criterions.cross_entropy import CrossEntropyCriterion

    from fairseq_layerdrop.criterions.layer_gate_loss import GatedCrossEntropyCriterion

    with tempfile.TemporaryDirectory() as tmp:
        print("generating and binarizing data ...", flush=True)
        data = make_data(tmp)
        runs = []
        for label, flags, weight in CONFIGS:
            torch.manual_seed(1)
            model, task = build_model(data, *train_args(args), "--arch", "transformer_lm_layerdrop",
                                      "--decoder-layerdrop", "0.5", *flags)
            if runs:  # the same starting weights for all
                model.load_state_dict(runs[0]["model"].state_dict(), strict=False)
            criterion = (CrossEntropyCriterion(task, False) if weight is None
                         else GatedCrossEntropyCriterion(task, False, gate_weight=weight))
            runs.append({"label": label, "model": model, "criterion": criterion, "task": task, "wps": [],
                         "seconds": [], "ran": [], "optimizer": Adam(model.parameters())})
        task = runs[0]["task"]
        task.load_dataset("train")
        iterator = task.get_batch_iterator(task.dataset("train"), max_tokens=args.max_tokens, seed=1)
        batches = list(iterator.next_epoch_itr(shuffle=True))
    total = args.warmup + args.steps
    same_draws = 0
    print(f"{len(CONFIGS)} configurations x {total} steps, taking turns", flush=True)
    for step in range(total):
        sample = batches[step % len(batches)]
        for i in range(len(runs)):
            run = runs[(step + i) % len(runs)]  # rotate who goes first
            run["optimizer"].torch.zero_grad(set_to_none=True)
            start = time.perf_counter()
            _, sample_size, _ = run["task"].train_step(sample, run["model"], run["criterion"], run["optimizer"], step)
            run["optimizer"].torch.step()
            seconds = time.perf_counter() - start
            if step >= args.warmup:
                run["seconds"].append(seconds)
                run["wps"].append(sample["ntokens"] / seconds)
                run["ran"].append(len(run["model"].decoder.layers.last_kept))
        same_draws += runs[0]["model"].decoder.layers.last_kept == runs[1]["model"].decoder.layers.last_kept
        if (step + 1) % 10 == 0:
            print(f"  step {step + 1}/{total}: " + ", ".join(
                f"{r['label'].split(' (')[0]} {statistics.median(r['wps'] or [0]):.0f}" for r in runs) + " words/s",
                flush=True)

    plain = runs[0]
    wps = {r["label"]: statistics.median(r["wps"]) for r in runs}
    ran = {r["label"]: statistics.mean(r["ran"]) for r in runs}
    rows = ["| configuration | words/s (median) | layers run per step | vs plain | vs plain, per layer run |",
            "|---|---:|---:|---:|---:|"]
    for r in runs:
        label = r["label"]
        per_layer = (wps[label] * ran[label]) / (wps[plain["label"]] * ran[plain["label"]])
        rows.append(f"| {label} | {wps[label]:.0f} | {ran[label]:.2f} | {wps[label] / wps[plain['label']]:.3f} | "
                    f"{per_layer:.3f} |")
    # paired by step (the same batch, run back to back), so that load drifting over minutes cancels
    frozen = statistics.median(p / f for p, f in zip(plain["seconds"], runs[1]["seconds"]))
    lines = [
        f"{args.steps} measured steps of {args.max_tokens} tokens per configuration (after {args.warmup}), "
        f"--decoder-layerdrop 0.5; plain and frozen dropped the same layers at {same_draws} of {total} steps", "",
        *rows, "",
        f"speed of gated-frozen relative to plain, median of per-step ratios: {frozen:.3f}; overhead of the gates "
        f"and the gating criterion (same draws): {(1 - frozen) * 100:.1f}% "
        f"(target < 5%: {'met' if frozen > 0.95 else 'NOT met'})"]
    publish_report(lines, args.out, "bench_gates.md")


if __name__ == "__main__":
    main()
