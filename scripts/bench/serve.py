"""Serving a pruned model: fairseq (full, pruned) against CTranslate2 (float32, int8, pruned), speed and quality.

    python -m scripts.bench.serve translation CHECKPOINT DATA --prune "--prune-to 6" \\
        --source-lang de --target-lang en --post-process sentencepiece        # or --spm spm.model
    python -m scripts.bench.serve lm CHECKPOINT DATA --prune "--prune-to 8"

CHECKPOINT is a plugin (or fairseq) checkpoint, DATA its fairseq-preprocess directory. The pruned model is
exported twice with ``fairseq-layerdrop prune PRUNE`` (``--as-fairseq`` for fairseq; ``--for-ctranslate2``, then
``ct2-fairseq-converter --unsafe_deserialization``: docs/serve.md) into --work. Four systems, all on the CPU:

    fairseq full        the checkpoint as trained, every layer
    fairseq pruned      the --as-fairseq export (fairseq's own architecture)
    CT2 float32 pruned  the converted export, ctranslate2 compute_type float32
    CT2 int8 pruned     the same model, compute_type int8 (weights quantized when loaded)

Quality, once per system (batch 32, all threads) on the first --quality-sentences of --subset: translation BLEU
(sacrebleu, detokenized with --spm or --post-process, against the detokenized references, or --references FILE);
LM perplexity of each sentence scored from ``</s>`` (its words and its ``</s>``), the same units for all four.
Speed: sentences/s on the first --speed-sentences, for each system at batch 1 and batch 32 (translation: beam
--beam; LM: scoring), with 1 thread and with all threads, every configuration once per round, interleaved over
--rounds (the median is reported). Batches are the same for every system (sentences sorted by length). Loading
is not timed. Writes WORK/bench_serve.md.
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from scripts.bench.common import BIN, PLUGIN, publish_report

SYSTEMS = ("fairseq full", "fairseq pruned", "CT2 float32 pruned", "CT2 int8 pruned")


def say(text):
    print(f"[serve {time.strftime('%H:%M:%S')}] {text}", flush=True)


def run(command):
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"serve: {os.path.basename(command[0])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def export_and_convert(args, work):
    """The pruned exports (fairseq, CTranslate2) and the converted CTranslate2 model directory."""
    plain, ct2, ct2_dir = (os.path.join(work, name) for name in ("pruned_fairseq.pt", "pruned_ct2.pt", "ct2_model"))
    prune = shlex.split(args.prune)
    if not os.path.exists(plain):
        say(f"exporting the pruned model as fairseq's own architecture: {plain}")
        print(run([os.path.join(BIN, "fairseq-layerdrop"), "prune", args.checkpoint, plain, *prune, "--as-fairseq"]),
              end="", flush=True)
    if not os.path.exists(os.path.join(ct2_dir, "model.bin")):
        say("exporting for CTranslate2 and converting (ct2-fairseq-converter)")
        run([os.path.join(BIN, "fairseq-layerdrop"), "prune", args.checkpoint, ct2, *prune, "--for-ctranslate2",
             "--overwrite"])
        languages = ["--source_lang", args.source_lang, "--target_lang", args.target_lang] \
            if args.kind == "translation" and args.source_lang else []
        run([os.path.join(BIN, "ct2-fairseq-converter"), "--model_path", ct2, "--data_dir", args.data,
             "--output_dir", ct2_dir, "--unsafe_deserialization", "--force", *languages])
    return plain, ct2_dir


def load_fairseq(args, checkpoint):
    from fairseq_layerdrop.cli.in_process import load_models

    extra = (["--task", "translation"] + (["--source-lang", args.source_lang, "--target-lang", args.target_lang]
                                          if args.source_lang else [])
             if args.kind == "translation" else
             ["--task", "language_modeling", "--sample-break-mode", "eos", "--tokens-per-sample",
              str(args.tokens_per_sample)])
    return load_models(args.data, checkpoint, *extra, parser="generation" if args.kind == "translation" else "eval_lm")


def read_split(args, task):
    """The subset's items in fairseq's dataset (sorted by length), and their tokens as strings for CTranslate2."""
    task.load_dataset(args.subset)
    dataset = task.dataset(args.subset)
    count = min(len(dataset), max(args.quality_sentences or len(dataset), args.speed_sentences))
    if args.kind == "translation":
        items = [dataset[i] for i in range(count)]
    else:  # CTranslate2 has positions for the model's --tokens-per-sample only (fairseq's sinusoids extend)
        fits = [i for i in range(len(dataset)) if dataset.sizes[i] <= args.tokens_per_sample]
        if len(fits) < len(dataset):
            say(f"scoring the {len(fits)} of {len(dataset)} {args.subset} sentences that fit --tokens-per-sample "
                f"{args.tokens_per_sample} (their words and </s>), for every system")
        items = [dataset[i] for i in fits[:count]]
        count = len(items)
    if args.kind == "translation":
        words = [task.source_dictionary.string(item["source"][:-1]).split() for item in items]  # CT2 adds </s>
    else:
        for item in items:
            assert item["source"][0] == task.dictionary.eos() and item["source"][1:].equal(item["target"][:-1])
        words = [["</s>"] + task.dictionary.string(item["target"][:-1]).split() + ["</s>"] for item in items]
    order = sorted(range(count), key=lambda i: (-len(words[i]), i))  # the same batches for every system
    return items, words, order


def batches_of(order, size, limit):
    chosen = [i for i in order if i < limit]
    return [chosen[i:i + size] for i in range(0, len(chosen), size)]


class FairseqSystem:
    def __init__(self, args, model, task, dataset):
        import torch

        self.args, self.model, self.task, self.dataset, self.torch = args, model, task, dataset, torch
        if args.kind == "translation":
            from fairseq.dataclass.configs import GenerationConfig

            self.generator = task.build_generator([model], GenerationConfig(beam=args.beam, max_len_a=args.max_len_a,
                                                                             max_len_b=args.max_len_b))

    def run(self, items, threads):
        """Hypotheses (token lists) or (negative log-likelihood, tokens) of a batch of dataset items."""
        torch = self.torch
        torch.set_num_threads(threads)
        sample = self.dataset.collater(items)
        with torch.no_grad():
            ids = sample["id"].tolist()  # the collater may reorder the batch
            if self.args.kind == "translation":
                hypos = self.task.inference_step(self.generator, [self.model], sample)
                by_id = {i: self.task.target_dictionary.string(h[0]["tokens"].int().cpu()).split()
                         for i, h in zip(ids, hypos)}
            else:
                net_output = self.model(**sample["net_input"])
                log_probs = self.model.get_normalized_probs(net_output, log_probs=True)
                target = sample["target"]
                scores = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
                mask = target.ne(self.task.dictionary.pad())
                by_id = {i: (-scores[row][mask[row]].sum().item(), int(mask[row].sum())) for row, i in enumerate(ids)}
            return [by_id[item["id"]] for item in items]


class CTranslate2System:
    def __init__(self, args, model_dir, compute_type, threads):
        import ctranslate2

        self.args = args
        kind = ctranslate2.Translator if args.kind == "translation" else ctranslate2.Generator
        self.models = {n: kind(model_dir, device="cpu", compute_type=compute_type, intra_threads=n, inter_threads=1)
                       for n in threads}

    def run(self, words, threads):
        model = self.models[threads]
        if self.args.kind == "translation":
            results = model.translate_batch(words, beam_size=self.args.beam, max_batch_size=len(words),
                                            max_decoding_length=self.args.max_len_b, min_decoding_length=1)
            return [r.hypotheses[0] for r in results]
        return [(-sum(r.log_probs), len(r.log_probs)) for r in model.score_batch(words, max_batch_size=len(words))]


def detokenize(args):
    if args.spm:
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_file=args.spm)
        return lambda tokens: processor.decode_pieces(tokens)
    from fairseq.data import data_utils

    return lambda tokens: data_utils.post_process(" ".join(tokens), args.post_process)


def quality(args, outputs, items, task):
    if args.kind == "lm":
        import math

        return math.exp(sum(n for n, _ in outputs) / sum(t for _, t in outputs))
    import sacrebleu

    detok = detokenize(args)
    if args.references:
        with open(args.references, encoding="utf-8") as f:
            references = [line.rstrip("\n") for line in f][:len(outputs)]
    else:
        references = [detok(task.target_dictionary.string(item["target"][:-1]).split()) for item in items]
    return sacrebleu.corpus_bleu([detok(o) for o in outputs], [references]).score


def call(system, args, indices, items, words, threads):
    if isinstance(system, FairseqSystem):
        return system.run([items[i] for i in indices], threads)
    return system.run([words[i] for i in indices], threads)


def measure(args, systems, items, words, order, task, threads):
    all_threads = max(threads)
    scores = {}
    limit = args.quality_sentences or len(items)
    for name, system in systems.items():
        say(f"quality: {name} on {limit} sentences (batch 32, {all_threads} threads)")
        outputs = [None] * limit
        for batch in batches_of(order, 32, limit):
            for i, output in zip(batch, call(system, args, batch, items, words, all_threads)):
                outputs[i] = output
        scores[name] = quality(args, outputs, items[:limit], task)
        say(f"  {name}: {'BLEU' if args.kind == 'translation' else 'perplexity'} {scores[name]:.2f}")
    speeds = {}
    configurations = [(n, b) for n in threads for b in (1, 32)]
    total = args.rounds * len(configurations) * len(systems)
    step = 0
    for round_ in range(args.rounds):
        for n, b in configurations:
            batches = batches_of(order, b, args.speed_sentences)
            sentences = sum(len(batch) for batch in batches)
            for name, system in systems.items():
                step += 1
                start = time.perf_counter()
                for batch in batches:
                    call(system, args, batch, items, words, n)
                speed = sentences / (time.perf_counter() - start)
                speeds.setdefault((name, n, b), []).append(speed)
                say(f"[{step}/{total}] round {round_ + 1}: {name:<19} threads {n:>2}, batch {b:>2}: "
                    f"{speed:8.2f} sentences/s")
    return scores, {key: statistics.median(values) for key, values in speeds.items()}


def report(args, scores, speeds, threads):
    metric = "BLEU" if args.kind == "translation" else "perplexity"
    columns = [(n, b) for n in threads for b in (1, 32)]
    lines = [f"Serving {args.checkpoint} pruned with `{args.prune}` ({args.kind}, {args.subset}; "
             + (f"beam {args.beam}" if args.kind == "translation" else "scoring") + "; sentences/s, median of "
             f"{args.rounds} interleaved rounds over {args.speed_sentences} sentences)", "",
             f"| system | {metric} | " + " | ".join(f"{n} thread{'s' if n > 1 else ''}, batch {b}" for n, b in columns)
             + " |", "|---|---:|" + "---:|" * len(columns)]
    for name in SYSTEMS:
        lines.append(f"| {name} | {scores[name]:.2f} | "
                     + " | ".join(f"{speeds[(name, n, b)]:.2f}" for n, b in columns) + " |")
    lines.append("")
    for n in threads:
        ratio = speeds[("CT2 int8 pruned", n, 1)] / speeds[("fairseq full", n, 1)]
        lines.append(f"- CT2 int8 pruned vs fairseq full, batch 1, {n} thread{'s' if n > 1 else ''}: {ratio:.2f}x")
    if args.kind == "translation":
        for name in ("CT2 float32 pruned", "CT2 int8 pruned", "fairseq full"):
            lines.append(f"- BLEU, {name} minus fairseq pruned: {scores[name] - scores['fairseq pruned']:+.2f}")
    else:
        for name in ("CT2 float32 pruned", "CT2 int8 pruned", "fairseq full"):
            lines.append(f"- perplexity, {name} / fairseq pruned: {scores[name] / scores['fairseq pruned']:.4f}")
    publish_report(lines, args.work, "bench_serve.md")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("translation", "lm"))
    parser.add_argument("checkpoint", help="the full checkpoint (plugin or fairseq)")
    parser.add_argument("data", help="its fairseq-preprocess directory")
    parser.add_argument("--prune", required=True, help='pruning options of fairseq-layerdrop prune, e.g. "--prune-to 6"')
    parser.add_argument("--work", help="where the exports, the CTranslate2 model and bench_serve.md go "
                                       "(default: a temporary directory, removed after)")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--source-lang")
    parser.add_argument("--target-lang")
    parser.add_argument("--spm", help="sentencepiece model to detokenize hypotheses and references")
    parser.add_argument("--post-process", default="none",
                        help="without --spm: fairseq's --post-process for detokenizing (sentencepiece, subword_nmt, "
                             "none)")
    parser.add_argument("--references", help="detokenized references, one line per sentence of the subset")
    parser.add_argument("--beam", type=int, default=4, help="beam size of every translation system")
    parser.add_argument("--max-len-a", type=float, default=0, help="fairseq's (CTranslate2: not supported, use 0)")
    parser.add_argument("--max-len-b", type=int, default=200, help="maximum output length of every system")
    parser.add_argument("--tokens-per-sample", type=int, default=512, help="LM: the longest sentence scored")
    parser.add_argument("--quality-sentences", type=int, help="sentences for BLEU / perplexity (default: all)")
    parser.add_argument("--speed-sentences", type=int, default=200, help="sentences timed per configuration")
    parser.add_argument("--threads", default=f"1,{len(os.sched_getaffinity(0))}",
                        help="thread counts to time (default: 1 and all)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the median is reported")
    args = parser.parse_args(argv)
    if args.max_len_a:
        parser.error("--max-len-a: CTranslate2 has an absolute maximum length only; give --max-len-b")
    threads = sorted({int(n) for n in args.threads.split(",")})
    if args.work:
        os.makedirs(args.work, exist_ok=True)
        return bench(args, args.work, threads)
    with tempfile.TemporaryDirectory() as work:
        args.work = work
        return bench(args, work, threads)


def bench(args, work, threads):
    import logging

    logging.getLogger("fairseq").setLevel(logging.WARNING)
    plain, ct2_dir = export_and_convert(args, work)
    say("loading fairseq full and pruned")
    full, task = load_fairseq(args, args.checkpoint)
    pruned, _ = load_fairseq(args, plain)
    items, words, order = read_split(args, task)
    dataset = task.dataset(args.subset)
    say(f"{len(items)} sentences of {args.subset}; threads {threads}")
    systems = {"fairseq full": FairseqSystem(args, full, task, dataset),
               "fairseq pruned": FairseqSystem(args, pruned, task, dataset),
               "CT2 float32 pruned": CTranslate2System(args, ct2_dir, "float32", threads),
               "CT2 int8 pruned": CTranslate2System(args, ct2_dir, "int8", threads)}
    scores, speeds = measure(args, systems, items, words, order, task, threads)
    report(args, scores, speeds, threads)


if __name__ == "__main__":
    main()
