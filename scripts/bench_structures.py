"""Training throughput of each LayerDrop structure and rate schedule, measured in one run.

The model, data and words/s reading of ``bench_train.py`` (a 12-layer LM of width 256 trained by
``fairseq-train --cpu``): at one rate p for every structure (Fan et al. Fig. 4: layer, sublayer,
attention, ffn, head, head+layer) and for every schedule (uniform, linear, linear-reverse), with
the ratio of words/s to our p = 0 run. Configurations are interleaved over ``--rounds``.

    python scripts/bench_structures.py                             # about 15 minutes on 2 cores
    python scripts/bench_structures.py --updates 20 --rounds 1     # a quick look

Head drop runs every block (the heads' value rows are scaled, nothing is skipped): it is not
expected to be faster than p = 0. A sub-layer structure skips blocks, not layers, so its speed-up
follows the blocks that did not run (shown: mean attention / FFN blocks run per update, of 12;
"-" where the structure does not drop blocks).
"""

import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_train import make_data, words_per_second  # noqa: E402

METERS = ("dec_layers_ran", "dec_attn_ran", "dec_ffn_ran")


def configs(p):
    """(label, rate, extra fairseq-train flags)."""
    rows = [("p=0", 0.0, [])]
    rows += [(f"{s} p={p}", p, ["--layerdrop-structure", s])
             for s in ("layer", "sublayer", "attention", "ffn", "head", "head+layer")]
    rows += [(f"layer, {s} schedule, top p={p}", p, ["--layerdrop-schedule", s]) for s in ("linear", "linear-reverse")]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=0.5, help="the LayerDrop rate of every configuration (default 0.5)")
    parser.add_argument("--updates", type=int, default=40, help="updates per run (default 40)")
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions with seeds 1..R; the mean is reported")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--tokens-per-sample", type=int, default=512)
    parser.add_argument("--out", default="bench_out", help="directory for bench_structures.md")
    args = parser.parse_args()
    if args.updates < 2 * args.log_interval:
        parser.error("--updates must be at least twice --log-interval (the first interval is warm-up)")

    rows = configs(args.rate)
    wps = {label: [] for label, *_ in rows}
    meters = {label: [] for label, *_ in rows}
    with tempfile.TemporaryDirectory() as tmp:
        print("generating and binarizing data ...", flush=True)
        data = make_data(tmp)
        for r in range(args.rounds):
            for i, (label, rate, extra) in enumerate(rows):
                speed, means = words_per_second(data, "transformer_lm_layerdrop", rate, True, args, r + 1, extra, METERS)
                wps[label].append(speed)
                meters[label].append(means)
                print(f"  round {r + 1}/{args.rounds} [{i + 1}/{len(rows)}] {label:<40} {speed:8.0f} words/s", flush=True)

    def mean_meter(label, name):
        values = [m[name] for m in meters[label] if m[name] is not None]
        return f"{statistics.mean(values):.2f}" if values else "-"

    base = statistics.mean(wps["p=0"])
    lines = [f"rate {args.rate}; {args.rounds} rounds x {args.updates} updates of {args.max_tokens} tokens "
             f"(first {args.log_interval} of each run are warm-up); 12-layer LM, width 256", "",
             "| configuration | words/s | vs p=0 | layers run | attention blocks run | FFN blocks run |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, *_ in rows:
        speed = statistics.mean(wps[label])
        lines.append(f"| {label} | {speed:.0f} | {speed / base:.3f} | {mean_meter(label, 'dec_layers_ran')} "
                     f"| {mean_meter(label, 'dec_attn_ran')} | {mean_meter(label, 'dec_ffn_ran')} |")
    report = "\n".join(lines)
    print("\n" + report)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_structures.md"), "w") as f:
        f.write(report + "\n")


if __name__ == "__main__":
    main()
