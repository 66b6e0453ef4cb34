"""Demo: train depth-on-demand language models, then prune them to every depth without finetuning.

Fan et al. (arXiv 1909.11556), Fig. 2 in miniature, on a generated corpus: an 8-layer LM is trained, with
the same budget, three ways: with in-place depth distillation (the full model and one sub-network of the
depths 1..7 per update, every-other, trained on the labels and on the full model's output: what this project
recommends, docs/depth_distillation.md), with LayerDrop p = 0.5, and without either (p = 0). Each is then
evaluated by ``fairseq-eval-lm`` at depths 8, 7, ..., 1, keeping evenly spaced layers, and the table (and
depth_plot.png) shows depth, kept layers, parameters and test perplexity of each. Pruning is the plugin's task
option (``--task language_modeling_layerdrop --decoder-layers-to-keep ...``). About 4 minutes on 2 CPU cores.

    python -m scripts.demo [--out demo_out] [--epochs 20]
"""

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import time

from fairseq_layerdrop.cli.in_process import PLUGIN
from fairseq_layerdrop.cli.sweep import plot
from fairseq_layerdrop.pruning import kept_layers
from scripts.data import toy_data

BIN = os.path.dirname(sys.executable)
LAYERS = 8
TRAIN = [
    "--task", "language_modeling", "--tokens-per-sample", "64", "--arch", "transformer_lm_layerdrop_tiny",
    "--decoder-layers", str(LAYERS), "--cpu", "--optimizer", "adam", "--lr", "0.002", "--max-tokens", "2048",
    "--seed", "1", "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "1000",
]

# name: (label, the model's own training flags)
MODELS = {
    "distill": ("depth distillation", ["--decoder-layerdrop", "0", "--criterion", "depth_distillation_cross_entropy",
                                       "--depth-menu", ",".join(str(d) for d in range(1, LAYERS))]),
    "layerdrop": ("LayerDrop p=0.5", ["--decoder-layerdrop", "0.5"]),
    "baseline": ("baseline p=0", ["--decoder-layerdrop", "0"]),
}


def run(step, cmd, log_path):
    """Run a fairseq command, keeping its output in log_path; stop with the step's name on failure."""
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.exit(f"demo: step '{step}' failed; see {log_path}")
    with open(log_path) as log:
        return log.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="working directory (data, checkpoints, logs, table)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of each model")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    for stale in ("bin", "distill", "layerdrop", "baseline"):  # a rerun starts afresh: no resumed checkpoints, no old data
        shutil.rmtree(os.path.join(out, stale), ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    started = time.time()

    def say(message):
        print(f"[{time.time() - started:6.1f}s] {message}", flush=True)

    say(f"generating a corpus in {out}/raw and binarizing it")
    raw = toy_data.write_lm(os.path.join(out, "raw"), train=4000, valid=300, test=300)
    data = os.path.join(out, "bin")
    run("preprocess", [os.path.join(BIN, "fairseq-preprocess"), "--only-source", "--trainpref", f"{raw}/train.txt",
                       "--validpref", f"{raw}/valid.txt", "--testpref", f"{raw}/test.txt", "--destdir", data,
                       "--workers", "2"], os.path.join(out, "preprocess.log"))

    for name, (label, flags) in MODELS.items():
        say(f"training the {name} model ({label}): {LAYERS} layers, {' '.join(flags)}, {args.epochs} epochs")
        log = run(f"train {name}", [os.path.join(BIN, "fairseq-train"), data, "--user-dir", PLUGIN, *TRAIN, *flags,
                                    "--max-epoch", str(args.epochs), "--save-dir", os.path.join(out, name)],
                  os.path.join(out, f"train_{name}.log"))
        ran = re.findall(r"\| dec_layers_ran ([0-9.]+)", log)
        say(f"  done; layers run per forward pass in the last epoch: {ran[-1] if ran else '?'} of {LAYERS}")

    rows = []
    for depth in range(LAYERS, 0, -1):
        kept = kept_layers("every-other", LAYERS, depth)
        row = {"depth": depth, "kept": ",".join(map(str, kept))}
        for name in MODELS:
            checkpoint = os.path.join(out, name, "checkpoint_best.pt")
            log = run(f"eval {name} depth {depth}", [os.path.join(BIN, "fairseq-eval-lm"), data, "--path", checkpoint,
                                                     "--user-dir", PLUGIN, "--task", "language_modeling_layerdrop",
                                                     "--decoder-layers-to-keep", row["kept"], "--cpu",
                                                     "--tokens-per-sample", "64", "--gen-subset", "test"],
                      os.path.join(out, f"eval_{name}_{depth}.log"))
            row[f"{name}_ppl"] = float(re.search(r"Perplexity: ([0-9.]+)", log).group(1))
            row["parameters"] = int(re.search(r"num. model params: ([0-9,]+)", log).group(1).replace(",", ""))
        say(f"depth {depth} (layers {row['kept']}): perplexity " +
            ", ".join(f"{row[f'{name}_ppl']:.2f} {label}" for name, (label, _) in MODELS.items()))
        rows.append(row)

    fields = ["depth", "kept", "parameters"] + [f"{name}_ppl" for name in MODELS]
    with open(os.path.join(out, "depth_table.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    table = ["| depth | kept layers | parameters | " + " | ".join(f"test ppl, {label}" for label, _ in MODELS.values())
             + " |", "|---:|---|---:|" + "---:|" * len(MODELS)]
    table += [f"| {r['depth']} | {r['kept']} | {r['parameters']:,} | "
              + " | ".join(f"{r[f'{name}_ppl']:.2f}" for name in MODELS) + " |" for r in rows]
    with open(os.path.join(out, "depth_table.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    curves = [{"depth": r["depth"], "quality": r[f"{name}_ppl"], "strategy": label}
              for name, (label, _) in MODELS.items() for r in rows]
    plot(curves, "perplexity", os.path.join(out, "depth_plot.png"), "pruned with every-other, no finetuning")
    print("\n" + "\n".join(table))
    say(f"wrote {out}/depth_table.csv, depth_table.md and depth_plot.png")


if __name__ == "__main__":
    main()
