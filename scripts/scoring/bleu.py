"""BLEU of ``fairseq-generate`` output, both ways the WMT16 En-De literature reports it.

compound-split BLEU (Vaswani et al. 2017, Ott et al. 2018, and Fan et al. 2019 Table 1, arXiv 1909.11556):
    tokenized corpus BLEU-4 (multi-bleu.perl: no smoothing, brevity penalty on the corpus) of the
    hypotheses (``H-`` lines) against the references (``T-`` lines) of ``fairseq-generate --remove-bpe``,
    both Moses-tokenized, after the rule of fairseq's ``scripts/compound_split_bleu.sh`` (from
    tensor2tensor's ``get_ende_bleu.sh``): a hyphen between two non-space characters becomes
    `` ##AT##-##AT## ``, so "Café-Liebhaber" counts as three tokens. Inflated; comparable only to itself.
sacreBLEU (Post 2018), what users expect: the hypotheses detokenized (Moses detokenizer) against the
    raw reference text (e.g. newstest2014's ``.sgm`` reference), sacrebleu's default 13a tokenization.

    python -m scripts.scoring.bleu gen.out                          # compound-split BLEU
    python -m scripts.scoring.bleu gen.out --no-compound-split      # plain tokenized BLEU
    python -m scripts.scoring.bleu gen.out --ref newstest2014.de --lang de   # sacreBLEU
    add --json to print {"bleu": ..., ...}
"""

import argparse
import json
import re
import sys
from typing import Dict, List, Tuple

COMPOUND = re.compile(r"(\S)-(\S)")


def compound_split(line: str) -> str:
    """The rule ``perl -ple 's{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g'``: non-overlapping matches, left to
    right, as perl makes them ("a-b-c" -> "a ##AT##-##AT## b-c")."""
    return COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


def read_generate(path: str) -> Tuple[List[str], List[str]]:
    """Hypotheses (``H-i<TAB>score<TAB>text``) and references (``T-i<TAB>text``) in sentence order."""
    hyps: Dict[int, str] = {}
    refs: Dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("H-"):
                parts = line.split("\t")
                hyps[int(parts[0][2:])] = parts[2] if len(parts) > 2 else ""
            elif line.startswith("T-"):
                parts = line.split("\t")
                refs[int(parts[0][2:])] = parts[1] if len(parts) > 1 else ""
    if not hyps:
        sys.exit(f"bleu: no H- lines in {path}: is it fairseq-generate's output?")
    if set(hyps) != set(refs):
        sys.exit(f"bleu: {path} has {len(hyps)} hypotheses but {len(refs)} references")
    ids = sorted(hyps)
    return [hyps[i] for i in ids], [refs[i] for i in ids]


def tokenized_bleu(hyps: List[str], refs: List[str]):
    """Corpus BLEU-4 of whitespace-tokenized text, no smoothing: multi-bleu.perl's (and fairseq-score's) number."""
    import sacrebleu

    return sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", smooth_method="none", force=True)


def detokenized_bleu(hyps: List[str], raw_refs: List[str], lang: str):
    """sacreBLEU of Moses-detokenized hypotheses against raw references (13a tokenization)."""
    import sacrebleu
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang=lang)
    return sacrebleu.corpus_bleu([detok.detokenize(h.split()) for h in hyps], [raw_refs])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generate_output", help="a file of fairseq-generate's output (run with --remove-bpe)")
    parser.add_argument("--no-compound-split", action="store_true", help="tokenized BLEU without the ##AT## rule")
    parser.add_argument("--ref", help="raw (detokenized) reference file, one sentence a line: score sacreBLEU")
    parser.add_argument("--lang", default="de", help="target language for the Moses detokenizer (with --ref)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    hyps, refs = read_generate(args.generate_output)
    if args.ref:
        with open(args.ref, encoding="utf-8") as f:
            raw_refs = [line.rstrip("\n") for line in f]
        if len(raw_refs) != len(hyps):
            sys.exit(f"bleu: --ref {args.ref} has {len(raw_refs)} lines for {len(hyps)} hypotheses")
        result, kind = detokenized_bleu(hyps, raw_refs, args.lang), "sacrebleu"
    elif args.no_compound_split:
        result, kind = tokenized_bleu(hyps, refs), "tokenized"
    else:
        result, kind = tokenized_bleu([compound_split(h) for h in hyps], [compound_split(r) for r in refs]), \
            "compound-split"
    if args.json:
        print(json.dumps({"bleu": round(result.score, 2), "kind": kind, "sentences": len(hyps),
                          "precisions": [round(p, 1) for p in result.precisions], "bp": round(result.bp, 3),
                          "sys_len": result.sys_len, "ref_len": result.ref_len}))
    else:
        print(f"{kind} BLEU = {result.score:.2f} ({len(hyps)} sentences; {result})")


if __name__ == "__main__":
    main()
