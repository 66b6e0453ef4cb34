"""Tiny samples in the real file formats of the recipes' sources, for ``--smoke`` runs and the tests.

The text is generated (deterministic, no downloads); the layout and formats are those of the real data,
so that a recipe's data, tokenization and scoring stages run exactly as on the real thing:

wmt16       WMT16 En-De as its archives unpack (fairseq ``examples/translation/prepare-wmt14en2de.sh``):
            raw parallel text ``training/europarl-v7.de-en.{en,de}``, ``commoncrawl.de-en.{en,de}``,
            ``training/news-commentary-v11.de-en.{en,de}``, dev ``dev/newstest2013.{en,de}``, and test
            ``test-full/newstest2014-deen-{src.en,ref.de}.sgm`` (SGML, one ``<seg id="N">`` a line).
            Untokenized, cased, with punctuation, apostrophes and hyphenated compounds.
wikitext103 ``wikitext-103/wiki.{train,valid,test}.tokens``: tokenized words, `` = Title = `` headings,
            ``@-@`` / ``@,@`` / ``@.@`` inside words and numbers, ``<unk>`` for rare words.
cnn_dm      CNN/DailyMail as its archives unpack: ``{cnn,dailymail}/stories/<sha1 of URL>.story`` (paragraphs,
            then ``@highlight`` blocks) and See et al.'s split lists ``url_lists/all_{train,val,test}.txt``.
glue        the eight GLUE tasks as the GLUE download script unpacks them (``TASK/{train,dev,test}.tsv``, MNLI's
            ``dev_matched`` ... ``test_mismatched``; each task's columns and headers, CoLA's header-less train
            and dev, a malformed QQP line), and a GPT-2 byte-level BPE learned on them: ``gpt2_bpe/encoder.json``,
            ``vocab.bpe`` and fairseq's ``dict.txt`` (the files fairseq's RoBERTa uses, in miniature).
wordnet     ``data.noun`` and ``data.verb`` of WordNet 3.0 (wndb(5WN): the license header, then ``offset lex_filenum
            ss_type w_cnt word lex_id ... p_cnt ... | gloss``) with generated definitions of six supersenses.

    python -m scripts.data.recipe_samples wmt16 OUT_DIR [--scale 1.0]
"""

import argparse
import hashlib
import os
import random

EN_DE = [
    ("the", "die"), ("government", "Regierung"), ("said", "sagte"), ("new", "neue"), ("city", "Stadt"),
    ("people", "Menschen"), ("year", "Jahr"), ("police", "Polizei"), ("school", "Schule"), ("market", "Markt"),
    ("council", "Rat"), ("will", "wird"), ("must", "muss"), ("today", "heute"), ("again", "wieder"),
    ("small", "kleine"), ("large", "große"), ("old", "alte"), ("young", "junge"), ("important", "wichtige"),
    ("report", "Bericht"), ("children", "Kinder"), ("water", "Wasser"), ("money", "Geld"), ("train", "Zug"),
    ("in", "in"), ("and", "und"), ("with", "mit"), ("for", "für"), ("not", "nicht"), ("very", "sehr"),
    ("state-of-the-art", "hochmoderne"), ("long-term", "langfristige"), ("cross-border", "grenzüberschreitende"),
    ("EU-wide", "EU-weite"), ("coffee-lover", "Café-Liebhaber"), ("well-known", "bekannte"),
]
NAMES = ["Merkel", "Berlin", "Gutach", "Brussels", "Obama", "Munich", "Schmidt"]


def _sentence(rng, lo=5, hi=14):
    pairs = [rng.choice(EN_DE) for _ in range(rng.randint(lo, hi))]
    en, de = [p[0] for p in pairs], [p[1] for p in pairs]
    if rng.random() < 0.4:
        name = rng.choice(NAMES)
        en.insert(0, name + "'s")
        de.insert(0, name + "s")
    if rng.random() < 0.3:
        cut = rng.randint(1, len(en) - 1)
        en[cut - 1] += ","
        de[cut - 1] += ","
    end = rng.choice([".", ".", "?", "!"])
    en_text = " ".join(en)
    de_text = " ".join(de)
    if rng.random() < 0.2:
        en_text, de_text = f'"{en_text}"', f"„{de_text}“"
    return en_text[0].upper() + en_text[1:] + end, de_text[0].upper() + de_text[1:] + end


def _write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def _sgm(path, setid, kind, lang, lines):
    head = (f'<srcset setid="{setid}" srclang="any">' if kind == "src"
            else f'<refset setid="{setid}" srclang="any" trglang="{lang}">')
    body = [head, '<doc sysid="ref" docid="1012-bbc" genre="news" origlang="en">', "<p>"]
    body += [f'<seg id="{i}">{line}</seg>' for i, line in enumerate(lines, 1)]
    body += ["</p>", "</doc>", "</srcset>" if kind == "src" else "</refset>"]
    _write(path, body)


def write_wmt16(out, scale=1.0):
    rng = random.Random(16)
    corpora = {"training/europarl-v7.de-en": 300, "commoncrawl.de-en": 200, "training/news-commentary-v11.de-en": 100}
    for prefix, n in corpora.items():
        pairs = [_sentence(rng) for _ in range(int(n * scale))]
        _write(os.path.join(out, prefix + ".en"), [p[0] for p in pairs])
        _write(os.path.join(out, prefix + ".de"), [p[1] for p in pairs])
    dev = [_sentence(rng) for _ in range(int(40 * scale))]
    _write(os.path.join(out, "dev/newstest2013.en"), [p[0] for p in dev])
    _write(os.path.join(out, "dev/newstest2013.de"), [p[1] for p in dev])
    test = [_sentence(rng) for _ in range(int(30 * scale))]
    _sgm(os.path.join(out, "test-full/newstest2014-deen-src.en.sgm"), "newstest2014", "src", "en", [p[0] for p in test])
    _sgm(os.path.join(out, "test-full/newstest2014-deen-ref.de.sgm"), "newstest2014", "ref", "de", [p[1] for p in test])
    return out


def _words(rng, vocab, n):
    out = []
    while len(out) < n:
        w = rng.choice(vocab)
        out += w.split()
    return out


def write_wikitext103(out, scale=1.0):
    rng = random.Random(103)
    vocab = [f"w{i}" for i in range(150)] + ["the", "of", "and", "in", "was", "to", "a", "<unk>", "<unk>",
                                              "first @-@ class", "1 @,@ 000", "3 @.@ 5", "\"", "(", ")"]
    for split, articles in (("train", 24), ("valid", 3), ("test", 3)):
        lines = []
        for a in range(int(articles * scale)):
            lines += [" ", f" = {rng.choice(['Valkyria', 'Tower', 'Robert', 'Boulevard'])} {a} = ", " "]
            for section in range(2):
                lines += [f" = = Section {section} = = ", " "]
                for _ in range(3):
                    sentences = [" ".join(_words(rng, vocab, rng.randint(5, 12))) + " ." for _ in range(3)]
                    lines += [" " + " ".join(sentences) + " ", " "]
        _write(os.path.join(out, "wikitext-103", f"wiki.{split}.tokens"), lines)
    return out


def write_cnn_dm(out, scale=1.0):
    """Stories as ``cnn_stories.tgz`` / ``dailymail_stories.tgz`` unpack (``cnn/stories/<sha1 of URL>.story``:
    paragraphs, then ``@highlight`` blocks) and See et al.'s URL lists ``url_lists/all_{train,val,test}.txt``."""
    rng = random.Random(11)
    for split, n in (("train", 150), ("val", 16), ("test", 12)):
        urls = []
        for i in range(int(n * scale)):
            source = rng.choice(["cnn", "dailymail"])
            url = (f"http://www.cnn.com/2015/04/0{i % 9 + 1}/world/{split}-story-{i}/index.html" if source == "cnn"
                   else f"http://www.dailymail.co.uk/news/article-{split}{i}/story.html")
            urls.append(url)
            paragraphs = [_sentence(rng, 6, 16)[0] for _ in range(rng.randint(4, 7))]
            if source == "cnn":
                paragraphs[0] = "(CNN) -- " + paragraphs[0]
            highlights = [p.rstrip(".!?") for p in paragraphs[:2]]  # highlights come without final periods
            body = "\n\n".join(paragraphs + [f"@highlight\n\n{h}" for h in highlights])
            name = hashlib.sha1(url.encode()).hexdigest()
            _write(os.path.join(out, source, "stories", name + ".story"), [body])
        _write(os.path.join(out, "url_lists", f"all_{split}.txt"), urls)
    return out


def _byte_words(texts):
    """The pre-tokens of GPT-2's BPE (its regular expression), each as its byte-level unicode string, counted."""
    import regex

    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    byte_encoder = bytes_to_unicode()
    pattern = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    counts = {}
    for text in texts:
        for token in pattern.findall(text.strip()):
            word = "".join(byte_encoder[b] for b in token.encode("utf-8"))
            counts[word] = counts.get(word, 0) + 1
    return counts, byte_encoder


def write_gpt2_bpe(out, texts, merges=150):
    """A GPT-2 byte-level BPE learned on ``texts``: ``encoder.json`` (the 256 byte symbols, then one per merge),
    ``vocab.bpe`` (``#version`` line, the merges) and fairseq's ``dict.txt`` (every id with its count in the
    texts, most frequent first), as fairseq's ``gpt2_bpe`` files; returns ``out``."""
    import json

    counts, byte_encoder = _byte_words(texts)
    words = {tuple(word): n for word, n in counts.items()}
    vocab = [byte_encoder[b] for b in sorted(byte_encoder)]
    learned = []
    for _ in range(merges):
        pairs = {}
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] = pairs.get(pair, 0) + n
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda pair: pairs[pair])
        learned.append(best)
        vocab.append(best[0] + best[1])
        merged = {}
        for word, n in words.items():
            out_word, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out_word.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out_word.append(word[i])
                    i += 1
            merged[tuple(out_word)] = merged.get(tuple(out_word), 0) + n
        words = merged
    os.makedirs(out, exist_ok=True)
    encoder = {symbol: i for i, symbol in enumerate(vocab)}
    with open(os.path.join(out, "encoder.json"), "w", encoding="utf-8") as f:
        json.dump(encoder, f, ensure_ascii=False)
    with open(os.path.join(out, "vocab.bpe"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in learned))
    frequency = {i: 0 for i in range(len(vocab))}
    for word, n in words.items():
        for symbol in word:
            frequency[encoder[symbol]] += n
    with open(os.path.join(out, "dict.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{i} {n}\n" for i, n in sorted(frequency.items(), key=lambda item: (-item[1], item[0]))))
    return out


def _tsv(path, header, rows):
    _write(path, ([header] if header else []) + ["\t".join(map(str, row)) for row in rows])


def write_glue(out, scale=1.0):
    """The GLUE tasks in the layout and columns of the GLUE download script (see the module docstring), with a
    learnable signal in each (a word that decides the label), and a GPT-2 BPE learned on all of their text."""
    rng = random.Random(25)
    sizes = {"train": int(48 * scale), "dev": int(16 * scale), "test": int(8 * scale)}
    texts = []

    def sentence():
        text = _sentence(rng, 4, 9)[0]
        texts.append(text)
        return text

    def cue(text, positive):  # the word that decides the label, so that a tiny model can learn something
        text = text[:-1] + (" indeed" if positive else " never") + text[-1]
        texts.append(text)
        return text

    for split, n in sizes.items():
        test = split == "test"
        rows = [(rng.random() < 0.5, sentence(), sentence()) for _ in range(n)]
        # CoLA: no header in train and dev: source, label, original mark, sentence
        _tsv(os.path.join(out, "CoLA", f"{split}.tsv"), "index\tsentence" if test else None,
             [(i, cue(a, y)) for i, (y, a, _) in enumerate(rows)] if test else
             [("gj04", int(y), "" if y else "*", cue(a, y)) for y, a, _ in rows])
        _tsv(os.path.join(out, "SST-2", f"{split}.tsv"), "index\tsentence" if test else "sentence\tlabel",
             [(i, a) for i, (_, a, _) in enumerate(rows)] if test else [(cue(a, y), int(y)) for y, a, _ in rows])
        _tsv(os.path.join(out, "MRPC", f"{split}.tsv"),
             ("index" if test else "Quality") + "\t#1 ID\t#2 ID\t#1 String\t#2 String",
             [(i if test else int(y), 1000 + i, 2000 + i, a, a if y else b) for i, (y, a, b) in enumerate(rows)])
        qqp = [(i, a, b) if test else (i, 10 + i, 20 + i, a, a if y else b, int(y)) for i, (y, a, b) in enumerate(rows)]
        if split == "train":
            qqp.insert(3, (999, 1, 2, "a question cut short"))  # a malformed line, which fairseq's script drops
        _tsv(os.path.join(out, "QQP", f"{split}.tsv"),
             "id\tquestion1\tquestion2" if test else "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", qqp)
        _tsv(os.path.join(out, "STS-B", f"{split}.tsv"),
             "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2" + ("" if test else "\tscore"),
             [(i, "main-news", "2012", "2012test", f"{i:04d}", "none", "none", a, a if y else b)
              + (() if test else (f"{(4.0 + rng.random()) if y else rng.random() * 2:.3f}",)) for i, (y, a, b) in enumerate(rows)])
        for name in ("QNLI", "RTE"):
            first = "question" if name == "QNLI" else "sentence1"
            second = "sentence" if name == "QNLI" else "sentence2"
            _tsv(os.path.join(out, name, f"{split}.tsv"), f"index\t{first}\t{second}" + ("" if test else "\tlabel"),
                 [(i, a, a + " " + b if y else b) + (() if test else ("entailment" if y else "not_entailment",))
                  for i, (y, a, b) in enumerate(rows)])
    parses = ("( a )", "( b )", "(ROOT a)", "(ROOT b)")
    for glue_name, n in (("train", sizes["train"]), ("dev_matched", sizes["dev"]), ("dev_mismatched", sizes["dev"]),
                         ("test_matched", sizes["test"]), ("test_mismatched", sizes["test"])):
        head = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2"
        rows = []
        for i in range(n):
            label = rng.choice(["entailment", "neutral", "contradiction"])
            a, b = sentence(), sentence()
            b = {"entailment": a, "neutral": b, "contradiction": cue(a, False)}[label]
            row = (i, 100 + i, f"{100 + i}n", "fiction") + parses + (a, b)
            if glue_name == "train":
                row += (label, label)
            elif glue_name.startswith("dev"):
                row += (label,) * 5 + (label,)
            rows.append(row)
        if glue_name == "train":
            head += "\tlabel1\tgold_label"
        elif glue_name.startswith("dev"):
            head += "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
        _tsv(os.path.join(out, "MNLI", f"{glue_name}.tsv"), head, rows)
    write_gpt2_bpe(os.path.join(out, "gpt2_bpe"), texts)
    return out


SUPERSENSES = {  # lex_filenum: (pos letter, words that mark the supersense in the generated definitions)
    5: ("n", ["animal", "creature", "bird", "fish", "mammal"]), 6: ("n", ["tool", "device", "machine", "building"]),
    18: ("n", ["person", "worker", "someone", "woman", "man"]), 20: ("n", ["plant", "tree", "shrub", "flower"]),
    35: ("v", ["touch", "hit", "press", "cut"]), 38: ("v", ["move", "walk", "travel", "fly"]),
}


def write_wordnet(out, scale=1.0):
    """``data.noun`` and ``data.verb`` in WordNet 3.0's format: per supersense, synsets of one or two lemmas
    whose definitions name it by one of its words."""
    rng = random.Random(30)
    fillers = ["small", "large", "common", "wild", "of europe", "used for work", "with a long tail", "of the sea",
               "quickly", "with force", "in a group", "at night"]
    lines = {"n": [], "v": []}
    per_sense = int(60 * scale)
    for lexnum, (pos, words) in SUPERSENSES.items():
        for i in range(per_sense):
            lemmas = [f"{pos}{lexnum}_{i}"] + ([f"alt{lexnum}x{i}"] if i % 3 == 0 else [])
            head = rng.choice(words)
            definition = (f"a {rng.choice(fillers)} {head} {rng.choice(fillers)}" if pos == "n"
                          else f"{head} something {rng.choice(fillers)} {rng.choice(fillers)}")
            pairs = " ".join(f"{w} {k}" for k, w in enumerate(lemmas))
            offset = 1740 + 100 * len(lines[pos])
            lines[pos].append(f"{offset:08d} {lexnum:02d} {pos} {len(lemmas):02x} {pairs} 000 | {definition}; "
                              f'"an example with {lemmas[0]}"  ')
    header = ["  1 This software and database is being provided to you, the LICENSEE, by  ",
              "  2 Princeton University under the following license. "]
    _write(os.path.join(out, "data.noun"), header + lines["n"])
    _write(os.path.join(out, "data.verb"), header + lines["v"])
    return out


WRITERS = {"wmt16": write_wmt16, "wikitext103": write_wikitext103, "cnn_dm": write_cnn_dm, "glue": write_glue,
           "wordnet": write_wordnet}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(WRITERS))
    parser.add_argument("out_dir")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every split's size")
    args = parser.parse_args(argv)
    print(WRITERS[args.kind](args.out_dir, args.scale))


if __name__ == "__main__":
    main()
