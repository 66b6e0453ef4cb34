"""Inference speed, memory and size of pruned models, measured in one run.

Two 12-layer models with random weights (speed does not depend on training): a transformer LM of
width 512 on generated Zipfian text (vocabulary about 10k, 512-token blocks), and a 12 + 12 layer
translation transformer of width 256 on the toy translation data. Each is evaluated at full depth,
pruned to 6 (every other layer) at load time by the plugin's task option, and as an exported
6-layer checkpoint:

- ``fairseq-eval-lm`` tokens/s and ``fairseq-generate`` sentences/s, as fairseq reports them
  (model loading excluded);
- peak resident memory of the whole command, and checkpoint file size (saved without optimizer state).

Runs are interleaved over ``--rounds`` and the median speed is reported: single runs of these
commands vary by about 10% on a shared 2-core machine.

The share of time in the layer stacks is estimated from a run at depth 1 (time = fixed +
per-layer x depth); it bounds the speed-up at half depth: ideal = 1 / (1 - share / 2).

    python -m scripts.bench.inference     # about 10 minutes on 2 cores
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

from scripts.bench.common import BIN, PLUGIN, make_data, publish_report
from scripts.data import toy_data
PEAK_MEMORY = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(f'PEAK_RSS_KB {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def measure(cmd):
    """Run a fairseq command; return its output and its peak resident memory in MB."""
    proc = subprocess.run([sys.executable, "-c", PEAK_MEMORY, *cmd], capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f"bench_inference: {os.path.basename(cmd[0])} failed:\n{proc.stderr[-3000:]}")
    return output, int(re.search(r"PEAK_RSS_KB (\d+)", output).group(1)) / 1024


def run_all(runs, command, common, speed_pattern, unit, rows, rounds):
    """Run ``command`` for each (label, checkpoint, options), interleaved over ``rounds``; return the
    median speeds and append table rows (median speed, largest peak memory, file size)."""
    speeds, peaks = {label: [] for label, *_ in runs}, {label: [] for label, *_ in runs}
    for r in range(rounds):
        for label, path, options in runs:
            output, peak = measure([os.path.join(BIN, command), "--path", path, *common, *options])
            speeds[label].append(float(re.search(speed_pattern, output).group(1)))
            peaks[label].append(peak)
            print(f"  round {r + 1}/{rounds}  {label:<32} {speeds[label][-1]:8.1f} {unit}", flush=True)
    speed = {label: statistics.median(v) for label, v in speeds.items()}
    for label, path, _ in runs:
        rows.append((label, f"{speed[label]:.1f} {unit}", max(peaks[label]), os.path.getsize(path) / 1e6))
    return speed


def make_checkpoint(data, save_dir, args):
    subprocess.run([os.path.join(BIN, "fairseq-train"), data, "--user-dir", PLUGIN, "--cpu", *args, "--optimizer",
                    "adam", "--lr", "1e-9", "--max-update", "1", "--save-dir", save_dir, "--no-epoch-checkpoints",
                    "--no-save-optimizer-state",
                    "--disable-validation"], check=True, capture_output=True)
    return os.path.join(save_dir, "checkpoint_last.pt")


def export(checkpoint, target, *options):
    subprocess.run([os.path.join(BIN, "fairseq-layerdrop-prune"), checkpoint, target, *options],
                   check=True, capture_output=True)
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_out", help="directory for bench_inference.md")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the median is reported")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        print("building a 12-layer LM checkpoint ...", flush=True)
        lm_data = make_data(os.path.join(tmp, "lm"), tokens=60_000)
        lm = make_checkpoint(lm_data, os.path.join(tmp, "lm_ckpt"), [
            "--task", "language_modeling", "--arch", "transformer_lm_layerdrop", "--decoder-layers", "12",
            "--decoder-embed-dim", "512", "--decoder-ffn-embed-dim", "2048", "--decoder-attention-heads", "8",
            "--decoder-input-dim", "512", "--decoder-output-dim", "512", "--share-decoder-input-output-embed",
            "--tokens-per-sample", "512", "--max-tokens", "512"])
        lm_small = export(lm, os.path.join(tmp, "lm6.pt"), "--prune-to", "6")
        lm_eval = [lm_data, "--cpu", "--user-dir", PLUGIN, "--task", "language_modeling_layerdrop",
                   "--tokens-per-sample", "512", "--max-tokens", "2048", "--gen-subset", "train"]
        lm_runs = [("LM full depth (12)", lm, []), ("LM pruned to 6 on load", lm, ["--prune-to", "6"]),
                   ("LM exported 6-layer checkpoint", lm_small, []), ("LM pruned to 1 on load", lm, ["--prune-to", "1"])]
        lm_speed = run_all(lm_runs, "fairseq-eval-lm", lm_eval, r"\(([0-9.]+) tokens/s\)", "tokens/s", rows, args.rounds)

        print("building a 12 + 12 layer translation checkpoint ...", flush=True)
        raw = toy_data.write_translation(os.path.join(tmp, "mt_raw"), train=200, valid=50, test=400)
        mt_data = os.path.join(tmp, "mt_bin")
        subprocess.run([os.path.join(BIN, "fairseq-preprocess"), "--source-lang", "src", "--target-lang", "tgt",
                        "--trainpref", f"{raw}/train", "--validpref", f"{raw}/valid", "--testpref", f"{raw}/test",
                        "--destdir", mt_data, "--workers", "2"], check=True, capture_output=True)
        mt = make_checkpoint(mt_data, os.path.join(tmp, "mt_ckpt"), [
            "--arch", "transformer_layerdrop", "--encoder-layers", "12", "--decoder-layers", "12",
            "--encoder-embed-dim", "256", "--encoder-ffn-embed-dim", "1024", "--encoder-attention-heads", "4",
            "--decoder-attention-heads", "4", "--max-tokens", "2048"])
        mt_small = export(mt, os.path.join(tmp, "mt6.pt"), "--prune-to", "6")
        generate = [mt_data, "--cpu", "--user-dir", PLUGIN, "--task", "translation_layerdrop", "--beam", "4",
                    "--batch-size", "50", "--required-batch-size-multiple", "1", "--max-len-a", "1", "--max-len-b", "2"]
        mt_runs = [("MT full depth (12 + 12)", mt, []), ("MT pruned to 6 + 6 on load", mt, ["--prune-to", "6"]),
                   ("MT exported 6 + 6 checkpoint", mt_small, []), ("MT pruned to 1 + 1 on load", mt, ["--prune-to", "1"])]
        mt_speed = run_all(mt_runs, "fairseq-generate", generate, r"\(([0-9.]+) sentences/s", "sentences/s", rows, args.rounds)

    def summary(speed, full, half, exported, one, unit):
        t_full, t_one = 1 / speed[full], 1 / speed[one]
        share = (t_full - t_one) * 12 / 11 / t_full  # time = fixed + per-layer x depth, from depths 12 and 1
        ideal = 1 / (1 - share / 2)
        return (f"{unit}: half depth is {speed[half] / speed[full]:.2f}x faster pruned on load, "
                f"{speed[exported] / speed[full]:.2f}x exported; layer-stack share {share:.2f}, "
                f"ideal {ideal:.2f}x")

    lines = ["| run | speed | peak memory (MB) | checkpoint (MB) |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {speed} | {peak:.0f} | {size:.1f} |" for label, speed, peak, size in rows]
    lines += ["", "- " + summary(lm_speed, *[r[0] for r in lm_runs], "fairseq-eval-lm"),
              "- " + summary(mt_speed, *[r[0] for r in mt_runs], "fairseq-generate")]
    publish_report(lines, args.out, "bench_inference.md")


if __name__ == "__main__":
    main()
