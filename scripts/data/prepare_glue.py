"""GLUE tasks -> GPT-2 BPE input0/input1/label files for fairseq's sentence_prediction task (RoBERTa fine-tuning).

Our own version of fairseq's ``examples/roberta/preprocess_GLUE_tasks.sh`` (not installed with fairseq): the same
columns, header handling and label files, with the GPT-2 byte-level BPE of fairseq's
``fairseq/data/encoders/gpt2_bpe_utils.py`` applied to each stripped text field (as fairseq's
``multiprocessing_bpe_encoder --keep-empty``: an empty field stays an empty line). The GLUE data is the standard
layout of the GLUE download script: ``GLUE_DIR/TASK/{train,dev,test}.tsv`` (MNLI: ``dev_matched``,
``dev_mismatched``, ``test_matched``, ``test_mismatched``); CoLA's train and dev files have no header, every
other file has one; QQP's train and dev lines without exactly 6 fields are dropped (as fairseq does), a short
line anywhere else is an error.

Writes ``OUT_DIR/TASK/{train,valid,test}.{input0,input1}`` (token ids of the GPT-2 BPE, space-separated; input1
for the sentence-pair tasks), ``{train,valid}.label`` (the test sets have no labels; STS-B's scores divided by 5,
into [0, 1], as fairseq does), and for MNLI ``valid1`` / ``test1`` (the mismatched sets: fairseq-preprocess
with ``--validpref matched,mismatched`` names them so). Then, per task, as fairseq's script does:

    fairseq-preprocess --only-source --srcdict dict.txt --trainpref OUT/TASK/train.input0 \\
        --validpref OUT/TASK/valid.input0 --testpref OUT/TASK/test.input0 --destdir TASK-bin/input0
    (input1 likewise; labels without --srcdict: --trainpref OUT/TASK/train.label --validpref ... --destdir
    TASK-bin/label; STS-B: copy {train,valid}.label to TASK-bin/label/ instead)

or give ``--dict dict.txt`` and this script runs those commands into ``OUT_DIR/TASK-bin``.

    python -m scripts.data.prepare_glue GLUE_DIR OUT_DIR --encoder-json encoder.json --vocab-bpe vocab.bpe \\
        [--tasks RTE,MRPC] [--dict dict.txt] [--workers 2]
"""

import argparse
import os
import shutil
import sys
from multiprocessing import Pool

# Per task (fairseq's preprocess_GLUE_tasks.sh, 0-based here): the input columns of train/dev, of test, the label
# column (of dev, if it differs: MNLI), the number of fields QQP's lines must have, and the number of classes
# (1: regression).
TASKS = {
    "CoLA": dict(inputs=(3,), test_inputs=(1,), label=1, classes=2, header=False),
    "SST-2": dict(inputs=(0,), test_inputs=(1,), label=1, classes=2),
    "MRPC": dict(inputs=(3, 4), test_inputs=(3, 4), label=0, classes=2),
    "QQP": dict(inputs=(3, 4), test_inputs=(1, 2), label=5, classes=2, fields=6),
    "STS-B": dict(inputs=(7, 8), test_inputs=(7, 8), label=9, classes=1),
    "MNLI": dict(inputs=(8, 9), test_inputs=(8, 9), label=11, dev_label=15, classes=3),
    "QNLI": dict(inputs=(1, 2), test_inputs=(1, 2), label=3, classes=2),
    "RTE": dict(inputs=(1, 2), test_inputs=(1, 2), label=3, classes=2),
}
# the GLUE file of each output split (fairseq's split names)
SPLIT_FILES = {"train": "train", "valid": "dev", "test": "test"}
MNLI_SPLIT_FILES = {"train": "train", "valid": "dev_matched", "valid1": "dev_mismatched",
                    "test": "test_matched", "test1": "test_mismatched"}

_ENCODER = {}


def _init_encoder(encoder_json, vocab_bpe):
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    _ENCODER["bpe"] = get_encoder(encoder_json, vocab_bpe)


def _encode(text):
    return " ".join(map(str, _ENCODER["bpe"].encode(text.strip())))


def split_files(task):
    return MNLI_SPLIT_FILES if task == "MNLI" else SPLIT_FILES


def read_split(glue_dir, task, split, glue_name):
    """(inputs, labels) of one GLUE file: lists of the input columns' texts per line, and the label column
    (None for a test set); plus the number of lines dropped (QQP only)."""
    spec = TASKS[task]
    path = os.path.join(glue_dir, task, glue_name + ".tsv")
    if not os.path.isfile(path):
        raise ValueError(f"no {path} (GLUE_DIR/{task}/{glue_name}.tsv as the GLUE download script unpacks it)")
    test = split.startswith("test")
    columns = spec["test_inputs"] if test else spec["inputs"]
    label = None if test else spec.get("dev_label", spec["label"]) if split != "train" else spec["label"]
    needed = max(columns + (() if label is None else (label,))) + 1
    with open(path, encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    first = 0 if (task == "CoLA" and not test) else 1  # CoLA's train and dev have no header
    inputs, labels, dropped = [[] for _ in columns], [], 0
    for number, line in enumerate(lines[first:], first + 1):
        fields = line.rstrip("\r").split("\t")
        if "fields" in spec and not test and len(fields) != spec["fields"]:
            dropped += 1
            continue
        if len(fields) < needed:
            raise ValueError(f"{path}:{number} has {len(fields)} tab-separated fields, {task} needs {needed}")
        for i, column in enumerate(columns):
            inputs[i].append(fields[column])
        if label is not None:
            labels.append(fields[label].strip())
    return inputs, (None if label is None else labels), dropped


def label_line(task, label):
    """STS-B's 0-5 similarity as fairseq's ``awk '{print $1 / 5.0}'`` writes it; other labels as they are."""
    return f"{float(label) / 5.0:.6g}" if task == "STS-B" else label


def prepare_task(glue_dir, out_dir, task, pool):
    """Write one task's files; return {split: number of examples} and the lines dropped."""
    task_dir = os.path.join(out_dir, task)
    os.makedirs(task_dir, exist_ok=True)
    counts, dropped_total = {}, 0
    for split, glue_name in split_files(task).items():
        inputs, labels, dropped = read_split(glue_dir, task, split, glue_name)
        dropped_total += dropped
        for i, texts in enumerate(inputs):
            encoded = pool.map(_encode, texts, chunksize=512) if pool else [_encode(t) for t in texts]
            with open(os.path.join(task_dir, f"{split}.input{i}"), "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in encoded))
        if labels is not None:
            with open(os.path.join(task_dir, f"{split}.label"), "w", encoding="utf-8") as f:
                f.write("".join(label_line(task, label) + "\n" for label in labels))
        counts[split] = len(inputs[0])
    return counts, dropped_total


def run_preprocess(*args):
    """``fairseq-preprocess ARGS...``, run in this process (its ``main``, as the console command calls it)."""
    import logging

    from fairseq import options
    from fairseq_cli import preprocess

    logger = logging.getLogger("fairseq_cli.preprocess")
    handlers = list(logger.handlers)
    try:
        preprocess.main(options.get_preprocessing_parser().parse_args([str(a) for a in args]))
    finally:
        for handler in logger.handlers[len(handlers):]:  # the log file it opens in the destination directory
            logger.removeHandler(handler)
            handler.close()


def binarize(out_dir, task, dictionary, workers=1):
    """fairseq-preprocess of one task's files into OUT_DIR/TASK-bin/{input0,input1,label}, as fairseq's script."""
    task_dir, bin_dir = os.path.join(out_dir, task), os.path.join(out_dir, task + "-bin")
    shutil.rmtree(bin_dir, ignore_errors=True)
    names = split_files(task)
    valid = [s for s in names if s.startswith("valid")]
    test = [s for s in names if s.startswith("test")]

    def prefs(column, splits):
        return ",".join(os.path.join(task_dir, f"{s}.{column}") for s in splits)

    def preprocess(*args):
        run_preprocess("--only-source", "--workers", str(workers), *args)

    for i in range(len(TASKS[task]["inputs"])):
        column = f"input{i}"
        preprocess("--srcdict", dictionary, "--trainpref", prefs(column, ["train"]), "--validpref", prefs(column, valid),
                   "--testpref", prefs(column, test), "--destdir", os.path.join(bin_dir, column))
    if TASKS[task]["classes"] == 1:  # regression: the targets are read as text (sentence_prediction's .label)
        os.makedirs(os.path.join(bin_dir, "label"))
        for split in ["train"] + valid:
            shutil.copy(os.path.join(task_dir, f"{split}.label"), os.path.join(bin_dir, "label", f"{split}.label"))
    else:
        preprocess("--trainpref", prefs("label", ["train"]), "--validpref", prefs("label", valid),
                   "--destdir", os.path.join(bin_dir, "label"))
    return bin_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("glue_dir", help="GLUE data: GLUE_DIR/TASK/{train,dev,test}.tsv")
    parser.add_argument("out_dir")
    parser.add_argument("--encoder-json", required=True, help="GPT-2 BPE encoder.json")
    parser.add_argument("--vocab-bpe", required=True, help="GPT-2 BPE vocab.bpe (the merges)")
    parser.add_argument("--tasks", default="ALL", help=f"comma-separated of {','.join(TASKS)}, or ALL (default)")
    parser.add_argument("--dict", help="fairseq's GPT-2 dict.txt: also binarize into OUT_DIR/TASK-bin")
    parser.add_argument("--workers", type=int, default=1, help="processes for the BPE and fairseq-preprocess")
    args = parser.parse_args(argv)
    tasks = list(TASKS) if args.tasks == "ALL" else [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        parser.error(f"--tasks: unknown task(s) {unknown}; choose from {','.join(TASKS)} or ALL")
    for name in ("encoder_json", "vocab_bpe", "dict"):
        path = getattr(args, name)
        if path is not None and not os.path.isfile(path):
            parser.error(f"--{name.replace('_', '-')} {path}: no such file")
    missing = [t for t in tasks if not os.path.isdir(os.path.join(args.glue_dir, t))]
    if missing:
        sys.exit(f"prepare_glue: no {', '.join(missing)} folder in {args.glue_dir} (the GLUE layout: GLUE_DIR/TASK/*.tsv)")
    pool = Pool(args.workers, _init_encoder, (args.encoder_json, args.vocab_bpe)) if args.workers > 1 else None
    _init_encoder(args.encoder_json, args.vocab_bpe)
    try:
        for task in tasks:
            counts, dropped = prepare_task(args.glue_dir, args.out_dir, task, pool)
            note = f" ({dropped} malformed lines dropped, as fairseq does)" if dropped else ""
            print(f"{task}: " + ", ".join(f"{split} {n:,}" for split, n in counts.items()) + note, flush=True)
            if args.dict:
                print(f"  binarized: {binarize(args.out_dir, task, args.dict, args.workers)}", flush=True)
    except ValueError as error:
        sys.exit(f"prepare_glue: {error}")
    finally:
        if pool:
            pool.close()
            pool.join()


if __name__ == "__main__":
    main()
