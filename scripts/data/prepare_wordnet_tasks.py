"""Two labelled tasks from WordNet 3.0 (Debian package ``wordnet-base``), for a mini BERT reproduction.

supersense        single sentence: a synset's definition -> its lexicographer file ("supersense", e.g.
                  ``noun.animal``, ``verb.motion``). By default nouns and verbs only: their 26 + 15 files are
                  the supersense inventory of the literature (Ciaramita & Johnson 2003), classes of meaning;
                  the adjective and adverb files (``adj.all``, ``adj.pert``, ``adj.ppl``, ``adv.all``) are
                  catch-alls by part of speech, which would mostly test whether a definition reads like an
                  adjective's (``--pos noun,verb,adj,adv`` keeps all 45).
definition_match  sentence pair: a lemma and a definition -> ``1`` if the definition is one of the lemma's
                  own senses, ``0`` if not. Each lemma (per part of speech) gives one positive (one of its
                  senses, chosen by hash) and one negative (the definition of a synset of the same part of
                  speech that does not contain the lemma, drawn from the positives of the same split, so that
                  every definition is seen as often matching as not): balanced. Neither definition may repeat a
                  word of the lemma (``efferent fiber``: "a nerve fiber that ..."), which string matching would
                  solve; a lemma whose every sense does is left out (on WordNet 3.0, a third of the lemmas, most
                  of them multi-word).

The input text is a synset's definition: the gloss up to its examples (the ``"..."`` segments after ``;``,
or after ``:``), whitespace normalized. Definitions shared by several synsets are kept once; one shared by
synsets of different lexicographer files is dropped from ``supersense`` (ambiguous). Splits are pure
functions of the text, not of file order: the MD5 of the definition (supersense) or of the lower-cased
lemma (definition_match; so no lemma is in two splits) modulo 100: 0-4 test, 5-9 valid, the rest train.

Also written: ``glosses_train.txt``, every definition that occurs in a train split and in no valid or
test split of either task, one a line, for adding to a masked-LM pre-training corpus (the recipe's PTB is
newswire; dictionary definitions are the fine-tuning tasks' register; no valid or test text may be seen
in pre-training).

    apt-get download wordnet-base && dpkg -x wordnet-base_*_all.deb deb
    python -m scripts.data.prepare_wordnet_tasks deb/usr/share/wordnet OUT_DIR [--pos noun,verb] [--lowercase]

Writes ``OUT_DIR/supersense/{train,valid,test}.{input0,label}``,
``OUT_DIR/definition_match/{train,valid,test}.{input0,input1,label}`` (raw text: apply BPE, then
``fairseq-preprocess --only-source`` per input and for the labels, as fairseq's sentence_prediction task
reads them), ``OUT_DIR/glosses_train.txt`` and ``OUT_DIR/sizes.json``; prints the sizes.
"""

import argparse
import hashlib
import json
import os
import re
import sys
from collections import defaultdict

SPLITS = ("train", "valid", "test")
POS_FILES = {"noun": "data.noun", "verb": "data.verb", "adj": "data.adj", "adv": "data.adv"}
# The 45 lexicographer files of WordNet 3.0 by number (lexnames(5WN); the file ``lexnames`` itself is not in
# wordnet-base).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()
ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")  # syntactic markers of adjectives in data.adj: able(a)
TASKS = ("supersense", "definition_match")


class Synset:
    __slots__ = ("offset", "pos", "lexname", "words", "definition")

    def __init__(self, offset, pos, lexname, words, definition):
        self.offset, self.pos, self.lexname, self.words, self.definition = offset, pos, lexname, words, definition


def definition_of(gloss):
    """The definition part of a gloss: the ``;``-separated segments before the first example (a segment
    that starts with ``"``), cut before a ``: "`` example; whitespace normalized, end punctuation trimmed."""
    kept = []
    for segment in gloss.split(";"):
        segment = " ".join(segment.split())
        if segment.startswith('"'):
            break
        if segment:
            kept.append(segment)
    text = "; ".join(kept)
    colon = text.find(': "')
    if colon >= 0:
        text = text[:colon]
    return text.strip(" ;:,")


def parse_data_line(line, pos):
    """A line of a WordNet data file -> Synset, or None for the license header (lines starting with spaces).

    Format (wndb(5WN)): ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...]
    [frames...] | gloss``; w_cnt and lex_id are hexadecimal, words use ``_`` for spaces."""
    if line.startswith(" ") or not line.strip():
        return None
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    if not sep or len(fields) < 6:
        raise ValueError(f"not a WordNet data line: {line[:80]!r}")
    lex_filenum, w_cnt = int(fields[1]), int(fields[3], 16)
    if not 0 <= lex_filenum < len(LEXNAMES):
        raise ValueError(f"lexicographer file number {lex_filenum} out of range in line {line[:80]!r}")
    words = [ADJ_MARKER.sub("", w).replace("_", " ") for w in fields[4:4 + 2 * w_cnt:2]]
    return Synset(fields[0], pos, LEXNAMES[lex_filenum], words, definition_of(gloss))


def read_wordnet(wordnet_dir, pos_list):
    """The synsets of the data files of the given parts of speech, in file order."""
    synsets = []
    for pos in pos_list:
        path = os.path.join(wordnet_dir, POS_FILES[pos])
        if not os.path.isfile(path):
            raise ValueError(f"no {POS_FILES[pos]} in {wordnet_dir} (the directory usr/share/wordnet of the "
                             "Debian package wordnet-base)")
        with open(path, encoding="utf-8") as f:
            synsets += [s for s in (parse_data_line(line, pos) for line in f) if s is not None]
    return synsets


def bucket(text, salt=""):
    return int(hashlib.md5((salt + text).encode("utf-8")).hexdigest(), 16)


def split_of(text, valid_percent=5, test_percent=5):
    """The split of a unit (a definition, or a lemma), a pure function of its text."""
    b = bucket(text) % 100
    return "test" if b < test_percent else "valid" if b < test_percent + valid_percent else "train"


def supersense_examples(synsets):
    """{split: [(definition, lexname)]} in hash order, and the number of definitions dropped as ambiguous."""
    labels = defaultdict(set)
    for s in synsets:
        if s.definition:
            labels[s.definition].add(s.lexname)
    by_split = {split: [] for split in SPLITS}
    for definition in sorted(labels, key=bucket):
        if len(labels[definition]) == 1:
            by_split[split_of(definition)].append((definition, next(iter(labels[definition]))))
    return by_split, sum(len(v) > 1 for v in labels.values())


WORD = re.compile(r"\w+")


def shares_word(lemma, definition):
    """Whether the definition repeats a word of the lemma (of 3 letters or more), or a word with the same first
    5 letters (``fibers`` for ``fiber``): a string match that would give the answer away."""
    words = {w for w in WORD.findall(definition.lower()) if len(w) >= 3}
    prefixes = {w[:5] for w in words if len(w) >= 5}
    return any(w in words or (len(w) >= 5 and w[:5] in prefixes)
               for w in WORD.findall(lemma.lower()) if len(w) >= 3)


def definition_match_examples(synsets):
    """{split: [(lemma, definition, "1" or "0")]}: per lemma and part of speech one positive and one negative,
    in hash order of the lemmas, and the number of lemmas left out because every sense's definition repeats a
    word of the lemma (``efferent fiber``: "a nerve fiber that ..."). Neither definition of a pair shares a word
    with its lemma, so that string matching tells nothing."""
    senses = defaultdict(list)  # (lemma key, pos) -> synsets in file order
    written = {}  # lemma key -> its first written form
    for s in synsets:
        if not s.definition:
            continue
        for word in s.words:
            key = word.lower()
            written.setdefault(key, word)
            if s not in senses[key, s.pos]:
                senses[key, s.pos].append(s)
    units = sorted(senses, key=lambda u: (bucket(f"{u[0]}|{u[1]}"), u))
    positive = {}
    for u in units:
        fair = [s for s in senses[u] if not shares_word(u[0], s.definition)]
        if fair:
            positive[u] = min(fair, key=lambda s: bucket(f"{u[0]}|{s.offset}"))
    left_out = len(units) - len(positive)
    units = [u for u in units if u in positive]
    pools = defaultdict(list)  # (split, pos) -> positive synsets of that split, deduplicated by definition
    seen = set()
    for u in units:
        s, split = positive[u], split_of(u[0])
        if (split, u[1], s.definition) not in seen:
            seen.add((split, u[1], s.definition))
            pools[split, u[1]].append(s)
    by_split = {split: [] for split in SPLITS}
    for key, pos in units:
        split = split_of(key)
        own = {s.definition for p in POS_FILES if (key, p) in senses for s in senses[key, p]}
        pool = pools[split, pos]
        negative = None
        for attempt in range(1000):
            candidate = pool[bucket(f"{key}|{pos}|negative|{attempt}") % len(pool)]
            if (candidate.definition not in own and key not in (w.lower() for w in candidate.words)
                    and not shares_word(key, candidate.definition)):
                negative = candidate
                break
        if negative is None:
            continue  # a pool of nothing but this lemma's own senses: only in tiny samples
        lemma = written[key]
        by_split[split] += [(lemma, positive[key, pos].definition, "1"), (lemma, negative.definition, "0")]
    return by_split, left_out


def cap(examples, n, per_unit=1):
    """The first ``n`` examples (rounded down to whole units of ``per_unit`` lines), or all if n is None."""
    return examples if n is None else examples[: (n // per_unit) * per_unit]


def write_task(out_dir, by_split, columns):
    os.makedirs(out_dir, exist_ok=True)
    for split, examples in by_split.items():
        for i, column in enumerate(columns):
            with open(os.path.join(out_dir, f"{split}.{column}"), "w", encoding="utf-8") as f:
                f.write("".join(example[i] + "\n" for example in examples))


def prepare(wordnet_dir, out_dir, pos_list=("noun", "verb"), lowercase=False, max_train=None, max_eval=None):
    """Write both tasks and the pre-training glosses; return the sizes (also written to sizes.json)."""
    synsets = read_wordnet(wordnet_dir, pos_list)
    if not synsets:
        raise ValueError(f"no synsets in the data files of {wordnet_dir}")
    if lowercase:
        for s in synsets:
            s.definition = s.definition.lower()
            s.words = [w.lower() for w in s.words]
    supersense, ambiguous = supersense_examples(synsets)
    matching, left_out = definition_match_examples(synsets)
    eval_text = {example[0] for split in ("valid", "test") for example in supersense[split]}
    eval_text |= {example[1] for split in ("valid", "test") for example in matching[split]}
    train_text = {example[0] for example in supersense["train"]} | {example[1] for example in matching["train"]}
    glosses = sorted(train_text - eval_text, key=bucket)
    sizes = {"synsets": len(synsets), "pos": list(pos_list), "supersense": {}, "definition_match": {}}
    for task, by_split, columns, per_unit in (("supersense", supersense, ("input0", "label"), 1),
                                              ("definition_match", matching, ("input0", "input1", "label"), 2)):
        by_split = {split: cap(examples, max_train if split == "train" else max_eval, per_unit)
                    for split, examples in by_split.items()}
        write_task(os.path.join(out_dir, task), by_split, columns)
        labels = sorted({example[-1] for examples in by_split.values() for example in examples})
        sizes[task] = {split: len(examples) for split, examples in by_split.items()}
        sizes[task]["classes"] = len(labels)
        sizes[task]["train_classes"] = len({example[-1] for example in by_split["train"]})
    sizes["supersense"]["ambiguous_definitions_dropped"] = ambiguous
    sizes["definition_match"]["lemmas"] = sum(len(v) for v in matching.values()) // 2
    sizes["definition_match"]["lemmas_left_out_as_their_definitions_repeat_them"] = left_out
    with open(os.path.join(out_dir, "glosses_train.txt"), "w", encoding="utf-8") as f:
        f.write("".join(g + "\n" for g in glosses))
    sizes["glosses_train"] = {"lines": len(glosses), "words": sum(len(g.split()) for g in glosses),
                              "excluded_as_in_valid_or_test": len(train_text & eval_text)}
    with open(os.path.join(out_dir, "sizes.json"), "w") as f:
        json.dump(sizes, f, indent=1)
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wordnet_dir", help="the directory holding data.noun, data.verb, ... (usr/share/wordnet)")
    parser.add_argument("out_dir")
    parser.add_argument("--pos", default="noun,verb",
                        help="parts of speech, comma-separated, of noun,verb,adj,adv (default noun,verb: 41 supersenses)")
    parser.add_argument("--lowercase", action="store_true", help="lower-case every text (e.g. to match PTB)")
    parser.add_argument("--max-train", type=int, help="keep the first N training examples (in hash order) of each task")
    parser.add_argument("--max-eval", type=int, help="keep the first N valid and N test examples of each task")
    args = parser.parse_args(argv)
    pos_list = [p for p in args.pos.split(",") if p]
    bad = [p for p in pos_list if p not in POS_FILES]
    if bad or not pos_list:
        parser.error(f"--pos: unknown part(s) of speech {bad}; choose from {','.join(POS_FILES)}")
    for name in ("max_train", "max_eval"):
        if getattr(args, name) is not None and getattr(args, name) < 2:
            parser.error(f"--{name.replace('_', '-')} must be at least 2")
    try:
        sizes = prepare(args.wordnet_dir, args.out_dir, pos_list, args.lowercase, args.max_train, args.max_eval)
    except ValueError as error:
        sys.exit(f"prepare_wordnet_tasks: {error}")
    print(f"{sizes['synsets']:,} synsets ({','.join(pos_list)})")
    for task in TASKS:
        s = sizes[task]
        print(f"{task}: " + ", ".join(f"{split} {s[split]:,}" for split in SPLITS) + f"; {s['classes']} classes"
              + (f" ({s['ambiguous_definitions_dropped']} ambiguous definitions dropped)" if task == "supersense" else
                 f" ({s['lemmas']:,} lemmas, balanced; "
                 f"{s['lemmas_left_out_as_their_definitions_repeat_them']:,} left out: every definition repeats them)"))
    g = sizes["glosses_train"]
    print(f"glosses_train.txt: {g['lines']:,} definitions, {g['words']:,} words "
          f"({g['excluded_as_in_valid_or_test']:,} train definitions left out as they are in valid or test)")
    print(f"wrote {args.out_dir}/{{{','.join(TASKS)}}}/ and glosses_train.txt")


if __name__ == "__main__":
    main()
