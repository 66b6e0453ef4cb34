"""What the benchmarks share: the 12-layer LM they train, its generated data, a timed fairseq-train run, the
in-process model builder, and the Markdown report. Import as ``from scripts.bench.common import ...``."""

import json
import os
import statistics
import subprocess
import sys

import numpy as np

from fairseq_layerdrop.cli.in_process import PLUGIN, build_model  # noqa: F401  (shared with the benchmarks)

BIN = os.path.dirname(sys.executable)
MODEL = [
    "--decoder-layers", "12", "--decoder-embed-dim", "256", "--decoder-ffn-embed-dim", "1024",
    "--decoder-attention-heads", "4", "--decoder-input-dim", "256", "--decoder-output-dim", "256",
    "--share-decoder-input-output-embed",
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


def publish_report(lines, out_dir, filename):
    """Print a benchmark's Markdown report and write it to ``out_dir/filename``."""
    report = "\n".join(lines)
    print("\n" + report)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, filename), "w") as f:
        f.write(report + "\n")
