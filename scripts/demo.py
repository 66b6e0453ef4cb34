"""Demo: train one LayerDrop language model, then prune it to every depth without finetuning.

Fan et al. (arXiv 1909.11556), Fig. 2 in miniature, on a generated corpus: an 8-layer LM is trained
with LayerDrop p = 0.5 and, with the same budget, without LayerDrop (p = 0). Both are then evaluated
by ``fairseq-eval-lm`` at depths 8, 7, ..., 1, keeping evenly spaced layers, and the table (and
depth_plot.png) shows depth, kept layers, parameters and test perplexity of each. Pruning is the plugin's task option
(``--task language_modeling_layerdrop --decoder-layers-to-keep ...``). About 5 minutes on 2 CPU cores.

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
    for stale in ("bin", "layerdrop", "baseline"):  # a rerun starts afresh: no resumed checkpoints, no old data
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

    models = {"layerdrop": 0.5, "baseline": 0.0}
    for name, rate in models.items():
        say(f"training the {name} model: {LAYERS} layers, --decoder-layerdrop {rate}, {args.epochs} epochs")
        log = run(f"train {name}", [os.path.join(BIN, "fairseq-train"), data, "--user-dir", PLUGIN, *TRAIN,
                                    "--decoder-layerdrop", str(rate), "--max-epoch", str(args.epochs),
                                    "--save-dir", os.path.join(out, name)], os.path.join(out, f"train_{name}.log"))
        ran = re.findall(r"\| dec_layers_ran ([0-9.]+)", log)
        say(f"  done; layers run per update in the last epoch: {ran[-1] if ran else '?'} of {LAYERS}")

    rows = []
    for depth in range(LAYERS, 0, -1):
        kept = kept_layers("every-other", LAYERS, depth)
        row = {"depth": depth, "kept": ",".join(map(str, kept))}
        for name in models:
            checkpoint = os.path.join(out, name, "checkpoint_best.pt")
            log = run(f"eval {name} depth {depth}", [os.path.join(BIN, "fairseq-eval-lm"), data, "--path", checkpoint,
                                                     "--user-dir", PLUGIN, "--task", "language_modeling_layerdrop",
                                                     "--decoder-layers-to-keep", row["kept"], "--cpu",
                                                     "--tokens-per-sample", "64", "--gen-subset", "test"],
                      os.path.join(out, f"eval_{name}_{depth}.log"))
            row[f"{name}_ppl"] = float(re.search(r"Perplexity: ([0-9.]+)", log).group(1))
            row["parameters"] = int(re.search(r"num. model params: ([0-9,]+)", log).group(1).replace(",", ""))
        say(f"depth {depth} (layers {row['kept']}): perplexity {row['layerdrop_ppl']:.2f} with LayerDrop, "
            f"{row['baseline_ppl']:.2f} without")
        rows.append(row)

    fields = ["depth", "kept", "parameters", "layerdrop_ppl", "baseline_ppl"]
    with open(os.path.join(out, "depth_table.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    table = ["| depth | kept layers | parameters | test ppl, LayerDrop p=0.5 | test ppl, baseline p=0 |",
             "|---:|---|---:|---:|---:|"]
    table += [f"| {r['depth']} | {r['kept']} | {r['parameters']:,} | {r['layerdrop_ppl']:.2f} | {r['baseline_ppl']:.2f} |"
              for r in rows]
    with open(os.path.join(out, "depth_table.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    curves = [{"depth": r["depth"], "quality": r[f"{name}_ppl"], "strategy": label}
              for label, name in (("LayerDrop p=0.5", "layerdrop"), ("baseline p=0", "baseline")) for r in rows]
    plot(curves, "perplexity", os.path.join(out, "depth_plot.png"), "pruned with every-other, no finetuning")
    print("\n" + "\n".join(table))
    say(f"wrote {out}/depth_table.csv, depth_table.md and depth_plot.png")


if __name__ == "__main__":
    main()
