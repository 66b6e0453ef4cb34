"""Overhead of learned layer gates and the gating criterion on training words/s, measured in one run.

The same 12-layer LM as ``bench_train.py`` (width 256, blocks of 512 tokens, 1,024 tokens per
update), trained by ``fairseq-train`` with ``--decoder-layerdrop 0.5``:

- plain: ``transformer_lm_layerdrop`` with ``--criterion cross_entropy``;
- gated, frozen: ``--layer-gates --criterion gated_cross_entropy --gate-weight 0``: the gates stay
  uniform, so every step drops exactly the layers the plain run drops; the difference is the
  overhead of the gates and the criterion alone (rates, log-probability, logging);
- gated, learning: the default ``--gate-weight``; its drops drift from the plain run's as the gates
  learn, so its words/s is also shown per layer run.

Configurations are interleaved over ``--rounds`` (seeds 1..R) so that machine drift hits all alike;
fairseq's own ``wps`` is read from its log lines, the first interval of each run being warm-up.

    python scripts/bench_gates.py                 # about 10 minutes on 2 cores
    python scripts/bench_gates.py --updates 20 --rounds 1
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_train import make_data, train_args  # noqa: E402
from fairseq_in_process import PLUGIN  # noqa: E402

BIN = os.path.dirname(sys.executable)
CONFIGS = [
    ("plain, cross_entropy", ["--criterion", "cross_entropy"]),
    ("gated, frozen (--gate-weight 0)", ["--layer-gates", "--criterion", "gated_cross_entropy", "--gate-weight", "0"]),
    ("gated, learning", ["--layer-gates", "--criterion", "gated_cross_entropy"]),
]


def run(data, flags, args, seed):
    cmd = [os.path.join(BIN, "fairseq-train"), data, "--cpu", "--user-dir", PLUGIN, *train_args(args, seed),
           "--arch", "transformer_lm_layerdrop", "--decoder-layerdrop", "0.5", *flags, "--max-update",
           str(args.updates), "--log-format", "json", "--log-interval", str(args.log_interval),
           "--disable-validation", "--no-save", "--no-progress-bar"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"fairseq-train failed:\n{proc.stderr[-3000:]}")
    logs = [json.loads(line.split("| train_inner | ", 1)[1])
            for line in (proc.stdout + proc.stderr).splitlines() if "| train_inner | " in line][1:]
    return statistics.mean(float(r["wps"]) for r in logs), statistics.mean(float(r["dec_layers_ran"]) for r in logs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--tokens-per-sample", type=int, default=512)
    parser.add_argument("--out", default="bench_out", help="directory for bench_gates.md")
    args = parser.parse_args()
    if args.updates < 2 * args.log_interval:
        parser.error("--updates must be at least twice --log-interval (the first interval is warm-up)")

    wps = {label: [] for label, _ in CONFIGS}
    ran = {label: [] for label, _ in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        print("generating and binarizing data ...", flush=True)
        data = make_data(tmp)
        for r in range(args.rounds):
            for label, flags in CONFIGS:
                w, layers = run(data, flags, args, seed=r + 1)
                wps[label].append(w)
                ran[label].append(layers)
                print(f"  round {r + 1}/{args.rounds}  {label:<32} {w:8.0f} words/s  {layers:5.2f} layers run",
                      flush=True)
    mean = {label: statistics.mean(v) for label, v in wps.items()}
    layers = {label: statistics.mean(v) for label, v in ran.items()}
    plain = CONFIGS[0][0]
    rows = ["| configuration | words/s | layers run per step | vs plain | vs plain, per layer run |",
            "|---|---:|---:|---:|---:|"]
    for label, _ in CONFIGS:
        per_layer = (mean[label] * layers[label]) / (mean[plain] * layers[plain])
        rows.append(f"| {label} | {mean[label]:.0f} | {layers[label]:.2f} | {mean[label] / mean[plain]:.3f} | "
                    f"{per_layer:.3f} |")
    frozen = mean[CONFIGS[1][0]] / mean[plain]
    report = "\n".join([f"{args.rounds} rounds x {args.updates} updates of {args.max_tokens} tokens, "
                        f"--decoder-layerdrop 0.5 (first {args.log_interval} updates of each run are warm-up)", "",
                        *rows, "", f"overhead of gates + gating criterion (frozen vs plain, same draws): "
                        f"{(1 - frozen) * 100:.1f}% (target < 5%: {'met' if frozen > 0.95 else 'NOT met'})"])
    print("\n" + report)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_gates.md"), "w") as f:
        f.write(report + "\n")


if __name__ == "__main__":
    main()
