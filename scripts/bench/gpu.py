"""LayerDrop on a GPU, measured in one interleaved run (Fan et al., arXiv 1909.11556).

At the paper's language-model shape (16 layers of width 1024, FFN 4096, 16 heads; here on generated Zipfian
text with a 10k vocabulary, --fp16), fairseq-train's own words/s (``wps`` of its ``train_inner`` lines, the
first interval skipped as warm-up) for fairseq's ``transformer_lm`` at p = 0 and with its built-in LayerDrop
p = 0.5, against ours at p = 0 and 0.5; then fairseq-eval-lm's tokens/s of ours trained at p = 0.5, pruned on
load to half depth against full depth. Configurations alternate over ``--rounds`` so that drift hits all alike.

    python -m scripts.bench.gpu --out results/bench        # on the GPU machine: about 2 minutes (docs/gpu.md)
    python -m scripts.bench.gpu --out /tmp/b --tiny        # the same pipeline on a tiny model (CPU dry run)

Writes OUT/bench.json (every measurement) and OUT/bench.md (the table with ratios), and prints the table.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(ROOT, "fairseq_layerdrop")
BIN = os.path.dirname(sys.executable)
PAPER_LM = {"layers": 16, "dim": 1024, "ffn": 4096, "heads": 16, "tokens_per_sample": 512, "max_tokens": 16384}
TINY_LM = {"layers": 4, "dim": 32, "ffn": 64, "heads": 2, "tokens_per_sample": 32, "max_tokens": 512}
TRAIN = [  # (label, arch, rate, uses the plugin)
    ("fairseq transformer_lm p=0", "transformer_lm", 0.0, False),
    ("fairseq built-in p=0.5", "transformer_lm", 0.5, False),
    ("ours p=0", "transformer_lm_layerdrop", 0.0, True),
    ("ours p=0.5", "transformer_lm_layerdrop", 0.5, True),
]


def say(message):
    print(f"[bench.gpu {time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_data(root, vocab, tokens, seed=0):
    """Zipfian text of ``tokens`` words, 40 a line, binarized by fairseq-preprocess."""
    rng = np.random.default_rng(seed)
    ranks = rng.zipf(1.1, size=tokens * 2)
    words = ranks[ranks <= vocab][:tokens]
    raw = os.path.join(root, "raw")
    os.makedirs(raw, exist_ok=True)
    lines = [" ".join(f"w{w}" for w in words[i:i + 40]) for i in range(0, len(words), 40)]
    for split, part in (("train", lines), ("valid", lines[:200]), ("test", lines[-400:])):
        with open(os.path.join(raw, f"{split}.txt"), "w") as f:
            f.write("\n".join(part) + "\n")
    run("fairseq-preprocess", "--only-source", "--trainpref", f"{raw}/train.txt", "--validpref", f"{raw}/valid.txt",
        "--testpref", f"{raw}/test.txt", "--destdir", os.path.join(root, "bin"), "--workers", "4")
    return os.path.join(root, "bin")


def run(command, *args):
    proc = subprocess.run([os.path.join(BIN, command), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        sys.exit(f"{command} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def device_args(cuda):
    return ["--fp16"] if cuda else ["--cpu"]


def model_args(shape):
    return ["--decoder-layers", shape["layers"], "--decoder-embed-dim", shape["dim"],
            "--decoder-ffn-embed-dim", shape["ffn"], "--decoder-attention-heads", shape["heads"],
            "--share-decoder-input-output-embed", "--decoder-normalize-before"]


def train(data, shape, arch, rate, plugin, updates, cuda, save_dir=None):
    """fairseq-train words/s after the first log interval, and ours' mean count of layers run."""
    log_interval = max(1, updates // 6)
    args = [data, "--task", "language_modeling", "--arch", arch, *model_args(shape), "--decoder-layerdrop", rate,
            "--tokens-per-sample", shape["tokens_per_sample"], "--max-tokens", shape["max_tokens"],
            "--optimizer", "adam", "--lr", "0.0005", "--seed", "1", "--max-update", updates, *device_args(cuda),
            "--log-format", "json", "--log-interval", log_interval, "--disable-validation", "--no-progress-bar"]
    args += ["--user-dir", PLUGIN] if plugin else []
    args += ["--save-dir", save_dir, "--no-epoch-checkpoints"] if save_dir else ["--no-save"]
    out = run("fairseq-train", *args)
    logs = [json.loads(line.split("| train_inner | ", 1)[1]) for line in out.splitlines() if "| train_inner | " in line]
    logs = logs[1:] or logs
    ran = [float(r["dec_layers_ran"]) for r in logs if "dec_layers_ran" in r]
    return statistics.mean(float(r["wps"]) for r in logs), (statistics.mean(ran) if ran else None)


def eval_lm(data, checkpoint, shape, cuda, *prune):
    """fairseq-eval-lm's tokens/s and perplexity on the test split."""
    out = run("fairseq-eval-lm", data, "--path", checkpoint, "--user-dir", PLUGIN, "--gen-subset", "test",
              "--tokens-per-sample", shape["tokens_per_sample"], "--max-tokens", shape["max_tokens"],
              *(["--fp16"] if cuda else ["--cpu"]), *prune)
    speed = re.search(r"Evaluated [0-9,]+ tokens in [0-9.]+s \(([0-9.]+) tokens/s\)", out)
    ppl = re.search(r"Perplexity: ([0-9.]+)", out)
    if not (speed and ppl):
        sys.exit("fairseq-eval-lm printed no speed or perplexity:\n" + out[-3000:])
    return float(speed.group(1)), float(ppl.group(1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for bench.json and bench.md")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and few updates (the CPU dry run)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--updates", type=int, default=None, help="updates per training run (default 120; tiny 12)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    shape = TINY_LM if args.tiny else PAPER_LM
    updates = args.updates or (12 if args.tiny else 120)
    device = torch.cuda.get_device_name(0) if cuda else "CPU (no CUDA)"
    say(f"{device}; {shape['layers']} layers of width {shape['dim']}, {updates} updates of {shape['max_tokens']} "
        f"tokens, {args.rounds} rounds")
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(tmp, vocab=300 if args.tiny else 10000, tokens=20_000 if args.tiny else 2_000_000)
        wps = {label: [] for label, *_ in TRAIN}
        ran = {label: [] for label, *_ in TRAIN}
        checkpoint_dir = os.path.join(tmp, "ours_p05")
        for r in range(args.rounds):
            for label, arch, rate, plugin in TRAIN:
                keep = checkpoint_dir if (label == "ours p=0.5" and r == 0) else None
                speed, layers = train(data, shape, arch, rate, plugin, updates, cuda, keep)
                wps[label].append(speed)
                ran[label].append(layers)
                say(f"round {r + 1}: {label}: {speed:.0f} words/s" + (f", {layers:.2f} layers ran" if layers else ""))
        checkpoint = os.path.join(checkpoint_dir, "checkpoint_last.pt")
        half = str(shape["layers"] // 2)
        evals = {"full depth": [], f"pruned to {half} (every other)": []}
        for r in range(args.rounds):
            for label, prune in (("full depth", ()), (f"pruned to {half} (every other)",
                                                      ("--task", "language_modeling_layerdrop", "--prune-to", half))):
                evals[label].append(eval_lm(data, checkpoint, shape, cuda, *prune))
                say(f"round {r + 1}: eval-lm {label}: {evals[label][-1][0]:.0f} tokens/s")
    result = {"device": device, "torch": torch.__version__, "shape": shape, "updates": updates, "rounds": args.rounds,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "train_wps": wps, "train_layers_ran": ran,
              "eval_tokens_per_s": {k: [s for s, _ in v] for k, v in evals.items()},
              "eval_perplexity": {k: v[0][1] for k, v in evals.items()}}
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(result, f, indent=1)
    mean = {k: statistics.mean(v) for k, v in wps.items()}
    lines = [f"GPU benchmark ({device}, torch {torch.__version__}, {result['date']}): `python -m scripts.bench.gpu "
             f"--out OUT{' --tiny' if args.tiny else ''}`; {shape['layers']} layers, width {shape['dim']}, "
             f"{updates} updates of {shape['max_tokens']} tokens, {'--fp16' if cuda else '--cpu'}, {args.rounds} "
             "interleaved rounds", "",
             "| training | words/s (mean) | per round | layers ran | vs fairseq p=0 |", "|---|---|---|---|---|"]
    for label, _, _, _ in TRAIN:
        layers = [x for x in ran[label] if x is not None]
        lines.append(f"| {label} | {mean[label]:.0f} | {', '.join(f'{x:.0f}' for x in wps[label])} | "
                     f"{statistics.mean(layers):.2f} |" if layers else
                     f"| {label} | {mean[label]:.0f} | {', '.join(f'{x:.0f}' for x in wps[label])} | (not logged) |")
        lines[-1] += f" {mean[label] / mean['fairseq transformer_lm p=0']:.3f} |"
    lines += ["", f"ours p=0.5 / fairseq built-in p=0.5: {mean['ours p=0.5'] / mean['fairseq built-in p=0.5']:.3f}; "
              f"ours p=0 / fairseq p=0: {mean['ours p=0'] / mean['fairseq transformer_lm p=0']:.3f}", "",
              "| fairseq-eval-lm, ours trained at p=0.5 | tokens/s (mean) | per round | perplexity (test) |",
              "|---|---|---|---|"]
    for label, values in evals.items():
        lines.append(f"| {label} | {statistics.mean(s for s, _ in values):.0f} | "
                     f"{', '.join(f'{s:.0f}' for s, _ in values)} | {values[0][1]:.2f} |")
    full, pruned = (statistics.mean(s for s, _ in v) for v in evals.values())
    lines += ["", f"pruned / full eval-lm speed: {pruned / full:.3f}"]
    report = "\n".join(lines)
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write(report + "\n")
    print("\n" + report, flush=True)


if __name__ == "__main__":
    main()
