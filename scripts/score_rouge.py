"""ROUGE-1, ROUGE-2 and ROUGE-L of summaries, with Google's ``rouge-score`` package (a Python ROUGE-1.5.5).

F1 averaged over documents, x100, with Porter stemming, as CNN/DailyMail results are reported
(Fan et al. 2019, arXiv 1909.11556, Table 2: 40.5/17.9/37.1). ROUGE-L is the summary-level
``rougeLsum`` (the union LCS over sentences, what ROUGE-1.5.5 and files2rouge compute for
multi-sentence summaries); sentences are split at ``.``, ``!`` or ``?`` followed by a space.
Input: two files with one summary a line (hypotheses, references), or ``--generate`` with
``fairseq-generate`` output (``D-`` hypotheses, against its ``T-`` references or ``--ref``).

    python scripts/score_rouge.py --hyp test.hypo --ref test.target [--json]
    python scripts/score_rouge.py --generate gen.out [--ref test.target] [--json]
"""

import argparse
import json
import re
import sys
from typing import Dict, List

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence a line, the form ``rougeLsum`` reads."""
    return "\n".join(s for s in SENTENCE_END.split(text.strip()) if s)


def rouge(hyps: List[str], refs: List[str]) -> Dict[str, float]:
    """Mean F1 x100 of ROUGE-1, ROUGE-2, ROUGE-L (summary level) over the documents."""
    from rouge_score import rouge_scorer

    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp, ref in zip(hyps, refs):
        scores = scorer.score(split_sentences(ref), split_sentences(hyp))
        totals["rouge1"] += scores["rouge1"].fmeasure
        totals["rouge2"] += scores["rouge2"].fmeasure
        totals["rougeL"] += scores["rougeLsum"].fmeasure
    return {k: 100 * v / len(hyps) for k, v in totals.items()}


def read_generate(path: str):
    """Detokenized hypotheses (``D-``) and references (``T-``) of fairseq-generate, in sentence order."""
    hyps, refs = {}, {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0].startswith("D-"):
                hyps[int(parts[0][2:])] = parts[2] if len(parts) > 2 else ""
            elif parts[0].startswith("T-"):
                refs[int(parts[0][2:])] = parts[1] if len(parts) > 1 else ""
    if not hyps or set(hyps) != set(refs):
        sys.exit(f"score_rouge: {path} has {len(hyps)} D- hypotheses and {len(refs)} T- references")
    ids = sorted(hyps)
    return [hyps[i] for i in ids], [refs[i] for i in ids]


def read_lines(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hyp", help="hypotheses, one summary a line")
    parser.add_argument("--ref", help="references, one summary a line (with --generate: instead of its T- lines)")
    parser.add_argument("--generate", help="fairseq-generate output instead of --hyp/--ref")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.generate:
        hyps, refs = read_generate(args.generate)
        if args.ref:  # the raw references instead of fairseq's (binarized, then decoded) T- lines
            refs = read_lines(args.ref)
    elif args.hyp and args.ref:
        hyps, refs = read_lines(args.hyp), read_lines(args.ref)
    else:
        parser.error("give --hyp and --ref, or --generate")
    try:
        scores = rouge(hyps, refs)
    except ValueError as error:
        sys.exit(f"score_rouge: {error}")
    if args.json:
        print(json.dumps({k: round(v, 2) for k, v in scores.items()} | {"documents": len(hyps)}))
    else:
        print("ROUGE-1 {rouge1:.2f}  ROUGE-2 {rouge2:.2f}  ROUGE-L {rougeL:.2f}".format(**scores),
              f"({len(hyps)} documents)")


if __name__ == "__main__":
    main()
