"""Training throughput of LayerDrop: ours against fairseq's own, measured in one run.

A 12-layer transformer LM of width 256 (FFN 1024, 4 heads) on generated Zipfian text with a
vocabulary of about 10k, trained by ``fairseq-train`` on the CPU. For each configuration we read
fairseq's own words/s (``wps``) from its ``train_inner`` log lines, skipping the first interval
(warm-up), and interleave the configurations over ``--rounds`` so that machine drift hits all alike.

The share of a training step spent in the layer stack bounds what LayerDrop can save:
ideal speed-up at rate p = 1 / (1 - p * share). We measure the share in process by timing
forward + backward + Adam step with the full stack and with the stack removed.

    python scripts/bench_train.py                          # about 12 minutes on 2 cores
    python scripts/bench_train.py --updates 20 --rounds 1  # a quick look

LayerDrop's speed depends on its random draws: at p = 0.5 the layers run per update vary by
about +-1.7 of 12, so runs must be long to compare rates fairly. The table shows ours' realized
mean (fairseq's built-in does not log it).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fairseq_in_process import PLUGIN, build_model  # noqa: E402

BIN = os.path.dirname(sys.executable)
MODEL = [
    "--decoder-layers", "12", "--decoder-embed-dim", "256", "--decoder-ffn-embed-dim", "1024",
    "--decoder-attention-heads", "4", "--decoder-input-dim", "256", "--decoder-output-dim", "256",
    "--share-decoder-input-output-embed",
]
CONFIGS = [  # (label, arch, rate, uses the plugin)
    ("fairseq transformer_lm", "transformer_lm", 0.0, False),
    ("fairseq built-in p=0.2", "transformer_lm", 0.2, False),
    ("fairseq built-in p=0.5", "transformer_lm", 0.5, False),
    ("ours p=0", "transformer_lm_layerdrop", 0.0, True),
    ("ours p=0.2", "transformer_lm_layerdrop", 0.2, True),
    ("ours p=0.5", "transformer_lm_layerdrop", 0.5, True),
]


def make_data(root, vocab=10000, tokens=400_000, seed=0):
    rng = np.random.default_rng(seed)
    ranks = rng.zipf(1.1, size=tokens * 2)
    words = ranks[ranks <= vocab][:tokens]
    raw = os.path.join(root, "raw")
    os.makedirs(raw, exist_ok=True)
    lines = [" ".join(f"w{w}" for w in words[i:i + 40]) for i in range(0, len(words), 40)]
    for split, part in (("train", lines), ("valid", lines[:50])):
        with open(os.path.join(raw, f"{split}.txt"), "w") as f:
            f.write("\n".join(part) + "\n")
    subprocess.run(
        [os.path.join(BIN, "fairseq-preprocess"), "--only-source", "--trainpref", f"{raw}/train.txt",
         "--validpref", f"{raw}/valid.txt", "--destdir", os.path.join(root, "bin"), "--workers", "2"],
        check=True, capture_output=True,
    )
    return os.path.join(root, "bin")


def train_args(args, seed=1):
    return ["--task", "language_modeling", "--tokens-per-sample", str(args.tokens_per_sample),
            "--max-tokens", str(args.max_tokens), "--optimizer", "adam", "--lr", "0.0005", "--seed", str(seed), *MODEL]


def words_per_second(data, arch, rate, plugin, args, seed, extra=(), meters=("dec_layers_ran",)):
    """Mean words/s after the first log interval, and ours' mean count of layers run (None for fairseq's).

    ``extra``: more fairseq-train flags; with several ``meters``, their means are returned as a dict."""
    cmd = [os.path.join(BIN, "fairseq-train"), data, "--cpu", *train_args(args, seed), "--arch", arch,
           "--decoder-layerdrop", str(rate), "--max-update", str(args.updates), "--log-format", "json",
           "--log-interval", str(args.log_interval), "--disable-validation", "--no-save", "--no-progress-bar"]
    if plugin:
        cmd += ["--user-dir", PLUGIN, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"fairseq-train failed:\n{proc.stderr[-3000:]}")
    logs = [json.loads(line.split("| train_inner | ", 1)[1])
            for line in (proc.stdout + proc.stderr).splitlines() if "| train_inner | " in line][1:]
    means = {m: statistics.mean(float(r[m]) for r in logs) if all(m in r for r in logs) else None for m in meters}
    return statistics.mean(float(r["wps"]) for r in logs), (means if len(meters) > 1 else means[meters[0]])


def layer_stack_share(data, args, repeats=5):
    """Fraction of a training step (forward, backward, Adam step) spent in the 12 layers."""
    import torch
    from torch import nn

    model, task = build_model(data, *train_args(args), "--arch", "transformer_lm_layerdrop", "--decoder-layerdrop", "0")
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = args.max_tokens // args.tokens_per_sample
    tokens = torch.randint(4, len(task.dictionary), (batch, args.tokens_per_sample))

    def step_seconds():
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            logits, _ = model(tokens)
            torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), tokens.view(-1)).backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:])

    full = step_seconds()
    layers = model.decoder.layers
    model.decoder.layers = nn.ModuleList([])
    without = step_seconds()
    model.decoder.layers = layers
    return (full - without) / full


def publish_report(lines, out_dir, filename):
    """Print a benchmark's Markdown report and write it to ``out_dir/filename``."""
    report = "\n".join(lines)
    print("\n" + report)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, filename), "w") as f:
        f.write(report + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=60, help="updates per run (default 60)")
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions with seeds 1..R; the mean is reported")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--tokens-per-sample", type=int, default=512)
    parser.add_argument("--out", default="bench_out", help="directory for bench_train.md")
    args = parser.parse_args()
    if args.updates < 2 * args.log_interval:
        parser.error("--updates must be at least twice --log-interval (the first interval is warm-up)")

    with tempfile.TemporaryDirectory() as tmp:
        print("generating and binarizing data ...", flush=True)
        data = make_data(tmp)
        print("measuring the layer stack's share of a training step ...", flush=True)
        share = layer_stack_share(data, args)
        print(f"  share = {share:.3f}", flush=True)
        results = {label: [] for label, *_ in CONFIGS}
        layers_ran = {label: [] for label, *_ in CONFIGS}
        for r in range(args.rounds):  # each round has its own seed, so its own LayerDrop draws
            for label, arch, rate, plugin in CONFIGS:
                wps, ran = words_per_second(data, arch, rate, plugin, args, seed=r + 1)
                results[label].append(wps)
                layers_ran[label].append(12.0 if rate == 0 else ran)
                print(f"  round {r + 1}/{args.rounds}  {label:<24} {wps:9.0f} words/s", flush=True)

    wps = {label: statistics.mean(v) for label, v in results.items()}
    ran = {label: (None if None in v else statistics.mean(v)) for label, v in layers_ran.items()}
    base, ours0 = wps["fairseq transformer_lm"], wps["ours p=0"]
    rows = ["| configuration | words/s | layers run per update | vs fairseq p=0 | vs own p=0 | ideal speed-up | of ideal |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for label, arch, rate, plugin in CONFIGS:
        ideal = 1 / (1 - rate * share)
        own0 = ours0 if plugin else base
        shown = "not logged" if ran[label] is None else f"{ran[label]:.2f}"
        rows.append(f"| {label} | {wps[label]:.0f} | {shown} | {wps[label] / base:.3f} | {wps[label] / own0:.3f} "
                    f"| {ideal:.3f} | {wps[label] / own0 / ideal:.3f} |")
    checks = [
        ("ours p=0 / fairseq transformer_lm", ours0 / base, 0.98),
        ("ours p=0.5 / ours p=0", wps["ours p=0.5"] / ours0, 1.5),
        ("ours p=0.5 speed-up / ideal", wps["ours p=0.5"] / ours0 / (1 / (1 - 0.5 * share)), 0.9),
        ("ours p=0.2 / fairseq built-in p=0.2", wps["ours p=0.2"] / wps["fairseq built-in p=0.2"], 0.98),
        ("ours p=0.5 / fairseq built-in p=0.5", wps["ours p=0.5"] / wps["fairseq built-in p=0.5"], 0.98),
    ]
    lines = [f"layer stack share of a training step: {share:.3f}; {args.rounds} rounds x {args.updates} updates "
             f"of {args.max_tokens} tokens (first {args.log_interval} of each run are warm-up)", "", *rows, "",
             "| target | measured | wanted | met |", "|---|---:|---:|---|"]
    lines += [f"| {name} | {value:.3f} | >= {want} | {'yes' if value >= want else 'NO'} |" for name, value, want in checks]
    publish_report(lines, args.out, "bench_train.md")


if __name__ == "__main__":
    main()
