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


WRITERS = {"wmt16": write_wmt16, "wikitext103": write_wikitext103, "cnn_dm": write_cnn_dm}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(WRITERS))
    parser.add_argument("out_dir")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every split's size")
    args = parser.parse_args(argv)
    print(WRITERS[args.kind](args.out_dir, args.scale))


if __name__ == "__main__":
    main()
