"""Moses punctuation normalization and tokenization (or detokenization) of standard input, with ``sacremoses``.

The Python port of the Perl pipeline of fairseq's ``examples/translation/prepare-wmt14en2de.sh``
(normalize-punctuation.perl | remove-non-printing-char.perl | tokenizer.perl), so that no Moses
checkout or Perl is needed. Hyphens stay inside words (no ``-a``), as in the WMT16 En-De data of
Ott et al. 2018 that Fan et al. 2019 used; compound-split BLEU then splits them at scoring time.

    python -m scripts.data.moses tokenize --lang en < raw.en > tok.en [--workers 4]
    python -m scripts.data.moses detokenize --lang de < tok.de > raw.de
"""

import argparse
import sys
from multiprocessing import Pool

_STATE = {}


def _init(mode, lang):
    from sacremoses import MosesDetokenizer, MosesPunctNormalizer, MosesTokenizer

    _STATE.update(mode=mode, norm=MosesPunctNormalizer(lang=lang), tok=MosesTokenizer(lang=lang),
                  detok=MosesDetokenizer(lang=lang))


def process(line: str) -> str:
    line = line.rstrip("\n")
    if _STATE["mode"] == "detokenize":
        return _STATE["detok"].detokenize(line.split())
    text = "".join(c for c in _STATE["norm"].normalize(line) if c.isprintable() or c == "\t")
    return _STATE["tok"].tokenize(text, return_str=True, escape=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["tokenize", "detokenize"])
    parser.add_argument("--lang", required=True, help="language code (en, de, ...)")
    parser.add_argument("--workers", type=int, default=1, help="processes (for millions of lines)")
    args = parser.parse_args(argv)
    lines = sys.stdin
    if args.workers > 1:
        with Pool(args.workers, initializer=_init, initargs=(args.mode, args.lang)) as pool:
            for out in pool.imap(process, lines, chunksize=1000):
                sys.stdout.write(out + "\n")
    else:
        _init(args.mode, args.lang)
        for line in lines:
            sys.stdout.write(process(line) + "\n")


if __name__ == "__main__":
    main()
