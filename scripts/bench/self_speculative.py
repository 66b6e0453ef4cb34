"""Benchmark: self-speculative decoding (LayerSkip, arXiv 2404.16710) against plain greedy, on CPU.

    python -m scripts.bench.self_speculative                 # train what is missing, then measure
    python -m scripts.bench.self_speculative --out DIR --updates 1200 --prompts 24 --sentences 40

Models (toy data of scripts/data/toy_data.py, pre-norm, width 64, seed 1, the same budget):
  lm_layerdrop     12-layer decoder LM, LayerDrop 0.2
  lm_layerdrop_ee  the same with the early-exit loss (--criterion early_exit_cross_entropy)
  lm_control       12-layer decoder LM without LayerDrop
  mt_*             6+6 translation models, the same three recipes
Trainings run one at a time unless --parallel; a finished one (DIR/NAME/done) is not redone.

Measurement, one interleaved run in this process, one sentence at a time (batch size 1, as
speculative decoding is usually measured): for every model and every E in 1..N-1, fairseq's own
greedy ``SequenceGenerator`` (``--beam 1``), then self-speculative decoding with K in {2, 4, 6},
then the same loop without drafts (K = 0, all layers on one position per step: what the loop costs
without speculation). LM: continuation of the first 3 words of the first --prompts test sentences
(as ``fairseq-interactive --task language_modeling_layerdrop``); MT: the first --sentences test
sentences. Every self-speculative output is compared token for token with fairseq's greedy output.
Speed-ups divide fairseq's greedy time (median over the model's E blocks) by the run's time.
Writes DIR/results.csv and DIR/results.md and prints the targets' checks.
"""

import argparse
import csv
import logging
import os
import statistics
import subprocess
import sys
import time
from argparse import Namespace

from scripts.bench.common import PLUGIN, publish_report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

MODELS = {  # name: (kind, LayerDrop rate, extra training flags)
    "lm_layerdrop": ("lm", 0.2, []),
    "lm_layerdrop_ee": ("lm", 0.2, ["--criterion", "early_exit_cross_entropy"]),
    "lm_control": ("lm", 0.0, []),
    "mt_layerdrop": ("mt", 0.2, []),
    "mt_layerdrop_ee": ("mt", 0.2, ["--criterion", "early_exit_cross_entropy"]),
    "mt_control": ("mt", 0.0, []),
}
COMMON = ["--dropout", "0.1", "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--clip-norm", "1.0",
          "--lr", "0.002", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100", "--num-workers", "0",
          "--seed", "1", "--cpu", "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "50",
          "--max-tokens", "2048"]
LM_ARCH = ["--task", "language_modeling", "--arch", "transformer_lm_layerdrop", "--decoder-layers", "12",
           "--decoder-embed-dim", "64", "--decoder-ffn-embed-dim", "256", "--decoder-attention-heads", "4",
           "--decoder-input-dim", "64", "--decoder-output-dim", "64", "--share-decoder-input-output-embed",
           "--decoder-normalize-before", "--tokens-per-sample", "64", "--sample-break-mode", "eos"]
MT_ARCH = ["--task", "translation", "--arch", "transformer_layerdrop_tiny", "--encoder-normalize-before",
           "--decoder-normalize-before", "--share-decoder-input-output-embed"]
DRAFTS = (2, 4, 6)


def say(text):
    print(f"[self_speculative {time.strftime('%H:%M:%S')}] {text}", flush=True)


def run(command, log):
    with open(log, "a") as f:
        subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, check=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})


def prepare_data(out):
    from scripts.data import toy_data

    if not os.path.exists(os.path.join(out, "bin_lm", "dict.txt")):
        say("writing and binarizing the toy LM corpus")
        toy_data.write_lm(os.path.join(out, "raw_lm"), train=4000, valid=300, test=300)
        raw = os.path.join(out, "raw_lm")
        run([os.path.join(BIN, "fairseq-preprocess"), "--only-source", "--trainpref", f"{raw}/train.txt",
             "--validpref", f"{raw}/valid.txt", "--testpref", f"{raw}/test.txt", "--destdir",
             os.path.join(out, "bin_lm"), "--workers", "1"], os.path.join(out, "prep_lm.log"))
    if not os.path.exists(os.path.join(out, "bin_mt", "dict.src.txt")):
        say("writing and binarizing the toy translation corpus")
        toy_data.write_translation(os.path.join(out, "raw_mt"), train=4000, valid=200, test=200)
        raw = os.path.join(out, "raw_mt")
        run([os.path.join(BIN, "fairseq-preprocess"), "--source-lang", "src", "--target-lang", "tgt",
             "--trainpref", f"{raw}/train", "--validpref", f"{raw}/valid", "--testpref", f"{raw}/test",
             "--destdir", os.path.join(out, "bin_mt"), "--joined-dictionary", "--workers", "1"],
            os.path.join(out, "prep_mt.log"))


def train_command(out, name, updates):
    kind, rate, extra = MODELS[name]
    data = os.path.join(out, "bin_lm" if kind == "lm" else "bin_mt")
    rates = ["--decoder-layerdrop", str(rate)] + ([] if kind == "lm" else ["--encoder-layerdrop", str(rate)])
    return [os.path.join(BIN, "fairseq-train"), data, "--user-dir", PLUGIN, *(LM_ARCH if kind == "lm" else MT_ARCH),
            *rates, *COMMON, "--max-update", str(updates), "--save-dir", os.path.join(out, name), *extra]


def train_missing(out, names, updates, parallel):
    todo = [n for n in names if not os.path.exists(os.path.join(out, n, "done"))]
    procs = []
    for name in todo:
        os.makedirs(os.path.join(out, name), exist_ok=True)
        say(f"training {name} ({updates} updates; log {out}/{name}/train.log)")
        log = open(os.path.join(out, name, "train.log"), "a")
        proc = subprocess.Popen(["nice", "-n", "10", *train_command(out, name, updates)], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore",
                                                               "OMP_NUM_THREADS": "1"})
        procs.append((name, proc))
        if not parallel:
            proc.wait()
    for name, proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"training {name} failed: see {out}/{name}/train.log")
        open(os.path.join(out, name, "done"), "w").write(f"{updates}\n")


def load(out, name):
    from fairseq_layerdrop.cli.in_process import load_models

    kind = MODELS[name][0]
    data = os.path.join(out, "bin_lm" if kind == "lm" else "bin_mt")
    task_name = "language_modeling_layerdrop" if kind == "lm" else "translation_layerdrop"
    model, task = load_models(data, os.path.join(out, name, "checkpoint_last.pt"), "--task", task_name)
    return model, task


def samples(out, kind, task, count):
    """One-sentence batches: LM prompts (first 3 words of test sentences) or MT test sentences."""
    import torch

    if kind == "lm":
        with open(os.path.join(out, "raw_lm", "test.txt")) as f:
            prompts = [" ".join(line.split()[:3]) for line in f][:count]
        tokens = [task.source_dictionary.encode_line(p, add_if_not_exist=False).long() for p in prompts]
        dataset = task.build_dataset_for_inference(tokens, [t.numel() for t in tokens])
    else:
        task.load_dataset("test")
        dataset = task.dataset("test")
    batches = [dataset.collater([dataset[i]]) for i in range(min(count, len(dataset)))]
    assert all(isinstance(b["net_input"]["src_tokens"], torch.Tensor) for b in batches)
    return batches


def decode(task, model, generator, batches):
    start = time.perf_counter()
    outputs = [task.inference_step(generator, [model], b)[0][0]["tokens"].tolist() for b in batches]
    return outputs, time.perf_counter() - start


def measure(out, name, count, max_len_b, rows):
    import torch
    from fairseq_layerdrop.decoding.self_speculative import SelfSpeculativeGenerator

    torch.set_num_threads(1)
    logging.getLogger("fairseq_layerdrop.self_speculative").setLevel(logging.WARNING)  # the table says it all
    kind = MODELS[name][0]
    model, task = load(out, name)
    batches = samples(out, kind, task, count)
    depth = len(model.decoder.layers)
    gen_args = dict(beam=1, max_len_a=0, max_len_b=max_len_b, min_len=1)
    greedy = task.build_generator([model], Namespace(**gen_args))
    reference, _ = decode(task, model, greedy, batches)  # warm-up, and the reference output
    tokens = sum(len(t) for t in reference)
    greedy_times, block = [], []
    for exit_layer in range(1, depth):
        _, seconds = decode(task, model, greedy, batches)
        greedy_times.append(seconds)
        for draft in DRAFTS:
            generator = task.build_generator([model], Namespace(**gen_args, self_speculative=exit_layer,
                                                                draft_tokens=draft))
            outputs, seconds = decode(task, model, generator, batches)
            s = generator.stats
            block.append(dict(model=name, exit_layer=exit_layer, draft_tokens=draft, sentences=len(batches),
                              tokens=tokens, acceptance=s.acceptance_rate, seconds=seconds,
                              tokens_per_verification=s.tokens / max(s.verifications, 1),
                              identical=sum(o == r for o, r in zip(outputs, reference))))
        loop = SelfSpeculativeGenerator([model], task.target_dictionary, exit_layer=exit_layer, draft_tokens=0,
                                        beam_size=1, max_len_b=max_len_b)
        outputs, seconds = decode(task, model, loop, batches)
        block.append(dict(model=name, exit_layer=exit_layer, draft_tokens=0, sentences=len(batches), tokens=tokens,
                          acceptance=float("nan"), seconds=seconds, tokens_per_verification=1.0,
                          identical=sum(o == r for o, r in zip(outputs, reference))))
        say(f"{name} E={exit_layer}: greedy {tokens / greedy_times[-1]:.0f} tok/s; " + ", ".join(
            f"K={r['draft_tokens']} {r['acceptance'] * 100:.0f}% {tokens / r['seconds']:.0f} tok/s"
            for r in block[-4:-1]))
    base = statistics.median(greedy_times)
    for r in block:
        r["greedy_tokens_per_s"] = tokens / base
        r["tokens_per_s"] = tokens / r["seconds"]
        r["speedup"] = base / r["seconds"]
    rows.extend(block)


def report(out, rows):
    fields = ["model", "exit_layer", "draft_tokens", "sentences", "tokens", "identical", "acceptance",
              "tokens_per_verification", "tokens_per_s", "greedy_tokens_per_s", "speedup"]
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| model | E | K | identical | acceptance | tokens/verification | tokens/s | greedy tokens/s | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        acc = "-" if r["draft_tokens"] == 0 else f"{100 * r['acceptance']:.1f}%"
        lines.append(f"| {r['model']} | {r['exit_layer']} | {r['draft_tokens']} | {r['identical']}/{r['sentences']} | "
                     f"{acc} | {r['tokens_per_verification']:.2f} | {r['tokens_per_s']:.0f} | "
                     f"{r['greedy_tokens_per_s']:.0f} | {r['speedup']:.2f}x |")
    publish_report(lines, out, "results.md")
    spec = [r for r in rows if r["draft_tokens"] > 0]
    print("\nchecks:")
    bad = [r for r in rows if r["identical"] != r["sentences"]]
    print(f"  identical outputs: {'yes, every run' if not bad else f'NO: {len(bad)} runs differ'}"
          f" ({len(rows)} runs, {sum(r['sentences'] for r in rows)} sentences)")
    for name in sorted({r["model"] for r in spec}):
        best = max((r for r in spec if r["model"] == name), key=lambda r: r["speedup"])
        print(f"  {name}: best speed-up {best['speedup']:.2f}x at E={best['exit_layer']}, K={best['draft_tokens']} "
              f"(acceptance {100 * best['acceptance']:.1f}%)")
    ee = [r["speedup"] for r in spec if r["model"] == "lm_layerdrop_ee"]
    if ee:
        print(f"  target best speed-up >= 1.5x for lm_layerdrop_ee: {'met' if max(ee) >= 1.5 else 'NOT met'} "
              f"({max(ee):.2f}x)")
    for kind in ("lm", "mt"):
        control = {(r["exit_layer"], r["draft_tokens"]): r["acceptance"] for r in spec if r["model"] == f"{kind}_control"}
        for name in (f"{kind}_layerdrop", f"{kind}_layerdrop_ee"):
            mine = [r for r in spec if r["model"] == name and (r["exit_layer"], r["draft_tokens"]) in control]
            if not mine:
                continue
            by_e = {}
            for r in mine:
                by_e.setdefault(r["exit_layer"], []).append(r["acceptance"] - control[(r["exit_layer"], r["draft_tokens"])])
            more = [e for e, d in sorted(by_e.items()) if statistics.mean(d) > 0]
            print(f"  {name} accepts more drafts than {kind}_control at E in {more} of {sorted(by_e)} "
                  f"(mean over K)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "bench_self_speculative"))
    parser.add_argument("--updates", type=int, default=1200, help="training updates of every model")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    parser.add_argument("--prompts", type=int, default=24, help="LM prompts (first 3 words of test sentences)")
    parser.add_argument("--sentences", type=int, default=40, help="MT test sentences")
    parser.add_argument("--max-len-b", type=int, default=30, help="fairseq's --max-len-b for every decoding")
    parser.add_argument("--parallel", action="store_true", help="train the missing models at the same time")
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    if args.updates < 1 or args.prompts < 1 or args.sentences < 1 or args.max_len_b < 1:
        parser.error("--updates, --prompts, --sentences and --max-len-b must be positive")
    os.makedirs(args.out, exist_ok=True)
    prepare_data(args.out)
    train_missing(args.out, names, args.updates, args.parallel)
    if args.train_only:
        return
    rows = []
    for name in names:
        say(f"measuring {name}")
        measure(args.out, name, args.prompts if MODELS[name][0] == "lm" else args.sentences, args.max_len_b, rows)
    report(args.out, rows)


if __name__ == "__main__":
    main()
