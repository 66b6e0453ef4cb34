"""The mini BERT recipe's text: a masked-LM pre-training corpus and the WordNet tasks, in one sentencepiece BPE.

Pre-training corpus: Penn Treebank (``scripts/data/prepare_ptb.py``'s ``train.txt``, ``valid.txt``, ``test.txt``)
and, unless ``--no-glosses``, the WordNet definitions of the tasks' train splits that are in no valid or test split
(``glosses_train.txt`` of ``scripts/data/prepare_wordnet_tasks.py``) added to its train part: PTB is newswire,
the tasks are dictionary definitions; a pre-training corpus covers its fine-tuning tasks' register (as RoBERTa's
does GLUE's), and no valid or test text is seen before fine-tuning. A sentencepiece BPE is learned on the
pre-training train text only (PTB's ``<unk>`` stays one symbol, which fairseq's dictionary reads as its own
unknown word) and applied to everything.

    python -m scripts.data.prepare_mini_bert PTB_DIR WORDNET_TASKS_DIR OUT_DIR [--vocab-size 8000] [--no-glosses]

Writes ``OUT_DIR/spm.model``, ``OUT_DIR/pretrain/{train,valid,test}.txt`` (for ``fairseq-preprocess
--only-source``) and ``OUT_DIR/TASK/{train,valid,test}.{input0,input1,label}`` (pieces; the labels copied), and
prints the sizes.
"""

import argparse
import os
import shutil
import sys

SPLITS = ("train", "valid", "test")
TASKS = ("supersense", "definition_match")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def write_lines(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def learn_bpe(lines, prefix, vocab_size):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=prefix, vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, hard_vocab_limit=False, num_threads=1, minloglevel=2,
        # fairseq's dictionary adds <s> </s> <pad> <unk> itself; PTB's <unk> is a word of the text
        bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0, unk_piece="<spm-unk>", user_defined_symbols=["<unk>"])
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def prepare(ptb_dir, tasks_dir, out_dir, vocab_size=8000, glosses=True):
    """Write the corpus and the tasks in pieces; return the sizes {name: (lines, pieces)}."""
    for split in SPLITS:
        if not os.path.isfile(os.path.join(ptb_dir, f"{split}.txt")):
            raise ValueError(f"no {split}.txt in {ptb_dir} (write it with: python -m scripts.data.prepare_ptb {ptb_dir})")
    gloss_path = os.path.join(tasks_dir, "glosses_train.txt")
    if not os.path.isfile(gloss_path):
        raise ValueError(f"no glosses_train.txt in {tasks_dir} (write it with scripts.data.prepare_wordnet_tasks)")
    corpus = {split: read_lines(os.path.join(ptb_dir, f"{split}.txt")) for split in SPLITS}
    if glosses:
        corpus["train"] = corpus["train"] + read_lines(gloss_path)
    os.makedirs(out_dir, exist_ok=True)
    model = learn_bpe(corpus["train"], os.path.join(out_dir, "spm"), vocab_size)

    def encode(lines):
        return [" ".join(pieces) for pieces in model.encode(lines, out_type=str)]

    sizes = {}
    for split, lines in corpus.items():
        encoded = encode(lines)
        write_lines(os.path.join(out_dir, "pretrain", f"{split}.txt"), encoded)
        sizes[f"pretrain/{split}"] = (len(lines), sum(len(line.split()) for line in encoded))
    for task in TASKS:
        for split in SPLITS:
            for column in ("input0", "input1"):
                path = os.path.join(tasks_dir, task, f"{split}.{column}")
                if os.path.isfile(path):
                    encoded = encode(read_lines(path))
                    write_lines(os.path.join(out_dir, task, f"{split}.{column}"), encoded)
                    if column == "input0":
                        sizes[f"{task}/{split}"] = (len(encoded), sum(len(line.split()) for line in encoded))
            label = os.path.join(tasks_dir, task, f"{split}.label")
            if not os.path.isfile(label):
                raise ValueError(f"no {task}/{split}.label in {tasks_dir}")
            shutil.copy(label, os.path.join(out_dir, task, f"{split}.label"))
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ptb_dir", help="train.txt, valid.txt, test.txt of scripts.data.prepare_ptb")
    parser.add_argument("tasks_dir", help="the output directory of scripts.data.prepare_wordnet_tasks")
    parser.add_argument("out_dir")
    parser.add_argument("--vocab-size", type=int, default=8000, help="sentencepiece BPE vocabulary (default 8000)")
    parser.add_argument("--no-glosses", action="store_true", help="pre-train on PTB alone")
    args = parser.parse_args(argv)
    try:
        sizes = prepare(args.ptb_dir, args.tasks_dir, args.out_dir, args.vocab_size, not args.no_glosses)
    except ValueError as error:
        sys.exit(f"prepare_mini_bert: {error}")
    for name, (lines, pieces) in sizes.items():
        print(f"{name}: {lines:,} lines, {pieces:,} pieces")
    print(f"sentencepiece BPE ({args.vocab_size} pieces, learned on pretrain/train"
          f"{'' if args.no_glosses else ': PTB + train glosses'}); wrote {args.out_dir}")


if __name__ == "__main__":
    main()
