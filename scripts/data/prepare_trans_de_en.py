"""German -> English sentence pairs from the Ding dictionary (Debian package ``trans-de-en``), split and BPE-encoded.

Each line of ``usr/share/trans/de-en`` is ``German :: English``; both sides are split by ``|`` into aligned
alternatives (a headword, its forms, phrases, and full example sentences). We keep the alternatives that
are sentences on both sides (a capital letter first, ``.``, ``!`` or ``?`` last, at least three words, no
grammar markers ``{...}`` and no ellipsis), strip trailing labels such as ``[coll.]``, take the first
variant where a side lists several (``Es regnet.; Es schüttet.``), drop headwords and phrases, and
deduplicate by the German sentence (about 19.5k pairs). The split is deterministic: a pair's bucket is
the MD5 of its German sentence modulo 100 (0-4 test, 5-9 valid, the rest train), so it does not depend on
file order. A joint sentencepiece BPE model is trained on the training split only.

    apt-get download trans-de-en && dpkg -x trans-de-en_*_all.deb deb
    python -m scripts.data.prepare_trans_de_en deb/usr/share/trans/de-en OUT_DIR [--vocab-size 6000]

Writes ``OUT_DIR/raw/{train,valid,test}.{de,en}`` (plain text), ``OUT_DIR/spm.model`` and
``OUT_DIR/bpe/{train,valid,test}.{de,en}`` (pieces, for ``fairseq-preprocess``).
"""

import argparse
import hashlib
import os
import re
import sys

SPLITS = ("train", "valid", "test")
LABEL = re.compile(r"\s*(\[[^\]]*\]|\{[^}]*\})\s*$")
STARTS = re.compile(r"^[„\"‚'(¿¡]?[A-ZÄÖÜ0-9]")
ENDS = re.compile(r"[.!?][\"“”’)]?$")


def strip_labels(text):
    """Remove trailing labels such as ``[coll.]`` or ``[Br.]`` (and stray ``{...}`` markers at the end)."""
    text = text.strip()
    while True:
        shorter = LABEL.sub("", text)
        if shorter == text:
            return text
        text = shorter


def is_sentence(text):
    """A full sentence: capital (or digit) first, sentence punctuation last, three words or more,
    no grammar markers and no ellipsis (which marks a phrase with a gap)."""
    return (bool(STARTS.match(text)) and bool(ENDS.search(text)) and len(text.split()) >= 3
            and "{" not in text and "…" not in text and "..." not in text)


def first_variant(text):
    """The first of several ``;``-separated sentence variants, or the text itself."""
    parts = [p.strip() for p in text.split("; ")]
    if len(parts) > 1 and all(is_sentence(p) for p in parts):
        return parts[0]
    return text


def sentence_pairs(lines):
    """The aligned (German, English) sentence alternatives of the dictionary lines, deduplicated by
    the German sentence (first occurrence wins), in file order."""
    pairs, seen = [], set()
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("#") or line.count(" :: ") != 1:
            continue
        german, english = line.split(" :: ")
        german_alts, english_alts = german.split("|"), english.split("|")
        if len(german_alts) != len(english_alts):
            continue  # not aligned: trust nothing on this line
        for de, en in zip(german_alts, english_alts):
            de, en = strip_labels(de), strip_labels(en)
            if not (is_sentence(de) and is_sentence(en)):
                continue
            de, en = first_variant(de), first_variant(en)
            if de not in seen:
                seen.add(de)
                pairs.append((de, en))
    return pairs


ANY_LABEL = re.compile(r"\s*(\[[^\]]*\]|\{[^}]*\})")


def phrase_pairs(lines, max_words=6):
    """The dictionary's own entries as extra training pairs: the aligned alternatives that are not sentences
    (headwords, their forms, phrases), every ``{...}``/``[...]`` label removed wherever it stands, the first
    ``;``-separated variant, at most ``max_words`` words a side, deduplicated by the pair. They teach the model
    the lexicon that the 17k example sentences show once each; they go to the training split only (and only those
    in the training sentences' vocabulary: ``within_vocabulary``)."""
    pairs, seen = [], set()
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("#") or line.count(" :: ") != 1:
            continue
        german, english = line.split(" :: ")
        german_alts, english_alts = german.split("|"), english.split("|")
        if len(german_alts) != len(english_alts):
            continue
        for de, en in zip(german_alts, english_alts):
            if is_sentence(strip_labels(de)) or is_sentence(strip_labels(en)):
                continue
            de, en = (" ".join(ANY_LABEL.sub(" ", side).split("; ")[0].split()) for side in (de, en))
            if not de or not en or len(de.split()) > max_words or len(en.split()) > max_words or "…" in de + en:
                continue
            if (de, en) not in seen:
                seen.add((de, en))
                pairs.append((de, en))
    return pairs


WORD = re.compile(r"\w+")


def within_vocabulary(extra, sentences):
    """The pairs of ``extra`` whose every word, on both sides (lower-cased), occurs in the ``sentences`` pairs:
    the dictionary's lexicon for the words the training sentences use, not its 350k technical terms."""
    known = [{w for pair in sentences for w in WORD.findall(pair[side].lower())} for side in (0, 1)]
    return [pair for pair in extra
            if all(set(WORD.findall(pair[side].lower())) <= known[side] for side in (0, 1))]


def split_of(german, valid_percent=5, test_percent=5):
    """The split of a pair, a pure function of its German sentence."""
    bucket = int(hashlib.md5(german.encode("utf-8")).hexdigest(), 16) % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + valid_percent:
        return "valid"
    return "train"


def write_splits(pairs, raw_dir, train_only=()):
    """Write ``raw_dir/{split}.{de,en}``; return ``{split: number of pairs}``. The ``train_only`` pairs (the
    dictionary's phrases) in the training sentences' vocabulary follow them, except any whose German is a valid or
    test sentence."""
    os.makedirs(raw_dir, exist_ok=True)
    by_split = {s: [] for s in SPLITS}
    for de, en in pairs:
        by_split[split_of(de)].append((de, en))
    held_out = {de for split in ("valid", "test") for de, _ in by_split[split]}
    by_split["train"] += [(de, en) for de, en in within_vocabulary(train_only, by_split["train"]) if de not in held_out]
    for split, items in by_split.items():
        for side, lang in ((0, "de"), (1, "en")):
            with open(os.path.join(raw_dir, f"{split}.{lang}"), "w", encoding="utf-8") as f:
                f.write("".join(p[side] + "\n" for p in items))
    return {s: len(items) for s, items in by_split.items()}


def train_and_apply_bpe(raw_dir, out_dir, vocab_size):
    """Train one sentencepiece BPE model on both sides of the training split; encode every split."""
    import sentencepiece as spm

    prefix = os.path.join(out_dir, "spm")
    spm.SentencePieceTrainer.train(
        input=",".join(os.path.join(raw_dir, f"train.{lang}") for lang in ("de", "en")), model_prefix=prefix,
        vocab_size=vocab_size, model_type="bpe", character_coverage=1.0, seed_sentencepiece_size=100000,
        num_threads=1, minloglevel=2,
    )
    model = spm.SentencePieceProcessor(model_file=prefix + ".model")
    bpe_dir = os.path.join(out_dir, "bpe")
    os.makedirs(bpe_dir, exist_ok=True)
    for split in SPLITS:
        for lang in ("de", "en"):
            with open(os.path.join(raw_dir, f"{split}.{lang}"), encoding="utf-8") as f:
                lines = f.read().splitlines()
            with open(os.path.join(bpe_dir, f"{split}.{lang}"), "w", encoding="utf-8") as f:
                f.write("".join(" ".join(pieces) + "\n" for pieces in model.encode(lines, out_type=str)))
    return prefix + ".model"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dictionary", help="the file usr/share/trans/de-en of the Debian package trans-de-en")
    parser.add_argument("out_dir")
    parser.add_argument("--vocab-size", type=int, default=6000, help="joint sentencepiece BPE vocabulary (default 6000)")
    parser.add_argument("--phrases", action="store_true",
                        help="add the dictionary's headwords and phrases (up to 6 words a side, every word one the training "
                        "sentences use) to the training split")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.dictionary):
        sys.exit(f"prepare_trans_de_en: no file {args.dictionary}; get it with: apt-get download trans-de-en && "
                 "dpkg -x trans-de-en_*_all.deb deb  (then pass deb/usr/share/trans/de-en)")
    with open(args.dictionary, encoding="utf-8") as f:
        pairs = sentence_pairs(f)
    if not pairs:
        sys.exit(f"prepare_trans_de_en: no sentence pairs in {args.dictionary}; is it the 'German :: English' file?")
    extra = []
    if args.phrases:
        with open(args.dictionary, encoding="utf-8") as f:
            extra = phrase_pairs(f)
    counts = write_splits(pairs, os.path.join(args.out_dir, "raw"), extra)
    print(f"{len(pairs):,} sentence pairs: " + ", ".join(f"{s} {n:,}" for s, n in counts.items())
          + (f" (train holds {counts['train'] - (len(pairs) - counts['valid'] - counts['test']):,} dictionary phrase "
             "pairs after the sentences)" if args.phrases else ""), flush=True)
    model = train_and_apply_bpe(os.path.join(args.out_dir, "raw"), args.out_dir, args.vocab_size)
    print(f"sentencepiece BPE ({args.vocab_size} pieces, trained on train): {model}; wrote {args.out_dir}/bpe/")


if __name__ == "__main__":
    main()
