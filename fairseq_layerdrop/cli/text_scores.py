"""Scores of generated text that ``fairseq-layerdrop sweep`` reports besides sacreBLEU: ROUGE of summaries.

ROUGE-1, ROUGE-2 and ROUGE-L with Google's ``rouge-score`` package (a Python ROUGE-1.5.5): F1 averaged over
documents, x100, with Porter stemming, as CNN/DailyMail results are reported (Fan et al. 2019, arXiv
1909.11556, Table 2: 40.5/17.9/37.1). ROUGE-L is the summary-level ``rougeLsum`` (the union LCS over
sentences, what ROUGE-1.5.5 and files2rouge compute for multi-sentence summaries); sentences are split at
``.``, ``!`` or ``?`` followed by a space.
"""

import re
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
