"""Perplexity from ``fairseq-eval-lm``'s output.

fairseq-eval-lm ends with ``Loss (base 2): L, Perplexity: P``, where P = 2 ** L (L the mean negative
log2-likelihood per token). This reads the last such line, checks that P = 2 ** L (refusing a log whose
two numbers disagree) and the number of tokens scored (``Evaluated N tokens``).
Word-level WikiText-103 perplexity as in Fan et al. 2019 (arXiv 1909.11556, Table 3: 18.3 test).

    fairseq-eval-lm ... 2>&1 | tee eval.log; python -m scripts.scoring.perplexity eval.log [--json]
"""

import argparse
import json
import re
import sys

RESULT = re.compile(r"Loss \(base 2\): ([0-9.]+), Perplexity: ([0-9.]+|inf)")
TOKENS = re.compile(r"Evaluated ([0-9,]+) tokens")


def parse(text: str) -> dict:
    """``{"loss_base2", "perplexity", "tokens"}`` from a fairseq-eval-lm log; ValueError if there is none."""
    results = RESULT.findall(text)
    if not results:
        raise ValueError("no 'Loss (base 2): ..., Perplexity: ...' line: did fairseq-eval-lm finish?")
    loss, printed = results[-1]
    loss = float(loss)
    perplexity = 2 ** loss
    if printed != "inf" and abs(perplexity - float(printed)) > 0.01 + 0.0005 * perplexity:
        raise ValueError(f"perplexity {printed} does not match 2 ** {loss} = {perplexity:.2f}")
    tokens = TOKENS.findall(text)
    return {"loss_base2": loss, "perplexity": perplexity if printed == "inf" else float(printed),
            "tokens": int(tokens[-1].replace(",", "")) if tokens else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", help="fairseq-eval-lm's output (stdout and stderr), '-' for standard input")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.log == "-" else open(args.log, encoding="utf-8").read()
    try:
        result = parse(text)
    except ValueError as error:
        sys.exit(f"perplexity: {args.log}: {error}")
    print(json.dumps(result) if args.json else f"perplexity {result['perplexity']:.2f} "
          f"(loss {result['loss_base2']:.4f} bits/token, {result['tokens']} tokens)")


if __name__ == "__main__":
    main()
