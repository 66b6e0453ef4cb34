"""ROUGE-1, ROUGE-2 and ROUGE-L of summaries, for the CNN/DailyMail recipe (the scores themselves:
``fairseq_layerdrop/cli/text_scores.py``, shared with ``fairseq-layerdrop sweep --metric ROUGE-L``).

Input: two files with one summary a line (hypotheses, references), or ``--generate`` with
``fairseq-generate`` output (``D-`` hypotheses, against its ``T-`` references or ``--ref``).

    python -m scripts.scoring.rouge --hyp test.hypo --ref test.target [--json]
    python -m scripts.scoring.rouge --generate gen.out [--ref test.target] [--json]
"""

import argparse
import json
import sys
from typing import List

from fairseq_layerdrop.cli.text_scores import rouge, split_sentences  # noqa: F401  (split_sentences: tests)


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
        sys.exit(f"rouge: {path} has {len(hyps)} D- hypotheses and {len(refs)} T- references")
    ids = sorted(hyps)
    return [hyps[i] for i in ids], [refs[i] for i in ids]


def read_lines(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hyp", help="hypotheses, one summary a line")
    parser.add_argument("--ref", help="references, one summary a line (with --generate: instead of its T- lines)")
    parser.add_argument("--generate", help="fairseq-generate output instead of --hyp/--ref")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
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
        sys.exit(f"rouge: {error}")
    if args.json:
        print(json.dumps({k: round(v, 2) for k, v in scores.items()} | {"documents": len(hyps)}))
    else:
        print("ROUGE-1 {rouge1:.2f}  ROUGE-2 {rouge2:.2f}  ROUGE-L {rougeL:.2f}".format(**scores),
              f"({len(hyps)} documents)")


if __name__ == "__main__":
    main()
