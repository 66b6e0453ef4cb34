"""The recipes' scoring and data helpers on known inputs, against values worked out by hand."""

import hashlib
import json
import os

import pytest
import torch

from fairseq_layerdrop.cli import average as average_checkpoints
from scripts.data import cnn_dm_stories
from scripts.scoring import bleu as score_bleu
from scripts.scoring import perplexity
from scripts.scoring import rouge as score_rouge
from tests.helpers import run_main


def run_script(module, *args, check=True):
    """The script's ``main`` on these arguments, in process."""
    return run_main(module.main, *args, check=check)


def write_generate(path, pairs):
    """A fairseq-generate output (run with --remove-bpe) for (hypothesis, reference) pairs, out of order."""
    lines = []
    for i, (hyp, ref) in reversed(list(enumerate(pairs))):
        lines += [f"S-{i}\tsource {i}", f"T-{i}\t{ref}", f"H-{i}\t-0.25\t{hyp}", f"D-{i}\t-0.25\t{hyp}",
                  f"P-{i}\t-0.1 -0.2"]
    lines.append("Generate test with beam=4: BLEU4 = 0.00")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_compound_split_is_the_perl_rule():
    # perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g': non-overlapping matches, left to right
    assert score_bleu.compound_split("state-of-the-art") == "state ##AT##-##AT## of ##AT##-##AT## the ##AT##-##AT## art"
    assert score_bleu.compound_split("a-b-c") == "a ##AT##-##AT## b-c"
    assert score_bleu.compound_split("x - y und Café-Liebhaber") == "x - y und Café ##AT##-##AT## Liebhaber"


def test_bleu_with_and_without_compound_splitting_match_hand_computed_values(tmp_path):
    # By hand. Without splitting, 6 tokens each: n-gram precisions 5/6, 3/5, 2/4, 1/3, brevity
    # penalty 1: BLEU = (1/12) ** (1/4) = 53.73. Split, 8 tokens each ("Café ##AT##-##AT## Freunde"):
    # 7/8, 5/7, 3/6, 1/5: BLEU = (1/16) ** (1/4) = 50.00.
    gen = write_generate(tmp_path / "gen.out", [("die Café-Freunde trinken heute viel Kaffee",
                                                  "die Café-Liebhaber trinken heute viel Kaffee")])
    split = json.loads(run_script(score_bleu, gen, "--json").stdout)
    plain = json.loads(run_script(score_bleu, gen, "--no-compound-split", "--json").stdout)
    assert split["bleu"] == pytest.approx(50.00, abs=0.005)
    assert (split["sys_len"], split["ref_len"]) == (8, 8)
    assert plain["bleu"] == pytest.approx(100 * (1 / 12) ** 0.25, abs=0.005) == pytest.approx(53.73, abs=0.005)


def test_bleu_uses_every_sentence_in_order_and_the_brevity_penalty(tmp_path):
    # sentence 0 is perfect (4 tokens); sentence 1's hypothesis is a 2-token prefix of its 4-token
    # reference. Corpus counts: 1-grams 6/6, 2-grams 4/4, 3-grams 2/2, 4-grams 1/1; c = 6, r = 8:
    # BLEU = exp(1 - 8/6) = 71.65. Scoring the sentences out of order would give less.
    gen = write_generate(tmp_path / "gen.out", [("a b c d", "a b c d"), ("e f", "e f g h")])
    hyps, refs = score_bleu.read_generate(str(gen))
    assert hyps == ["a b c d", "e f"] and refs == ["a b c d", "e f g h"]
    assert json.loads(run_script(score_bleu, gen, "--json").stdout)["bleu"] == pytest.approx(71.65, abs=0.005)


def test_sacrebleu_detokenizes_the_hypotheses_against_the_raw_reference(tmp_path):
    gen = write_generate(tmp_path / "gen.out", [('" Hallo , Welt ! "', "x"), ("Es geht ( gut ) .", "y")])
    ref = tmp_path / "ref.de"
    ref.write_text('"Hallo, Welt!"\nEs geht (gut).\n', encoding="utf-8")
    result = json.loads(run_script(score_bleu, gen, "--ref", ref, "--lang", "de", "--json").stdout)
    assert result["kind"] == "sacrebleu" and result["bleu"] == pytest.approx(100.0)


def test_bleu_refuses_a_file_that_is_not_generate_output(tmp_path):
    bad = tmp_path / "bad.out"
    bad.write_text("hello\n")
    proc = run_script(score_bleu, bad, check=False)
    assert proc.returncode != 0 and "no H- lines" in proc.stderr


def test_rouge_matches_hand_computed_values():
    # hyp "the cat sat on the mat", ref "the cat is on the mat" (6 tokens each):
    # ROUGE-1: the x2, cat, on, mat = 5 of 6 -> F1 83.33; ROUGE-2: the cat, on the, the mat = 3 of 5
    # -> 60.00; ROUGE-L: LCS "the cat on the mat" = 5 -> 83.33. A second document scoring 100 in all
    # three makes the means 91.67, 80.00, 91.67.
    scores = score_rouge.rouge(["the cat sat on the mat", "A dog ran."], ["the cat is on the mat", "A dog ran."])
    assert scores["rouge1"] == pytest.approx((500 / 6 + 100) / 2)
    assert scores["rouge2"] == pytest.approx(80.0)
    assert scores["rougeL"] == pytest.approx((500 / 6 + 100) / 2)


def test_rouge_l_is_summary_level_over_sentences():
    # Two reference sentences in the other order. Summary-level ROUGE-L takes the union LCS per
    # reference sentence: both sentences are found whole (F1 100); one LCS over the whole text
    # (sentence-level ROUGE-L) would find only one of them (F1 50).
    scores = score_rouge.rouge(["b c d. e f g."], ["e f g. b c d."])
    assert score_rouge.split_sentences("b c d. e f g.") == "b c d.\ne f g."
    assert scores["rougeL"] == pytest.approx(100.0)
    assert scores["rouge2"] == pytest.approx(80.0)  # 5 bigrams each ("b c d e f g", "e f g b c d"), 4 shared


def test_rouge_script_reads_generate_output_with_raw_references(tmp_path):
    gen = write_generate(tmp_path / "gen.out", [("the cat sat on the mat", "ignored"), ("A dog ran.", "ignored")])
    ref = tmp_path / "test.target"
    ref.write_text("the cat is on the mat\nA dog ran.\n")
    result = json.loads(run_script(score_rouge, "--generate", gen, "--ref", ref, "--json").stdout)
    assert result == {"rouge1": 91.67, "rouge2": 80.0, "rougeL": 91.67, "documents": 2}


def test_perplexity_parses_eval_lm_output_and_checks_it():
    log = ("2026-11-22 00:50:30 | INFO | fairseq_cli.eval_lm | Evaluated 1,234 tokens in 1.0s (1234.00 tokens/s)\n"
           "2026-11-22 00:50:30 | INFO | fairseq_cli.eval_lm | Loss (base 2): 4.3219, Perplexity: 20.00\n")
    assert perplexity.parse(log) == {"loss_base2": 4.3219, "perplexity": 20.0, "tokens": 1234}  # 2 ** 4.3219 = 20.00
    with pytest.raises(ValueError, match="does not match"):
        perplexity.parse(log.replace("Perplexity: 20.00", "Perplexity: 18.30"))
    with pytest.raises(ValueError, match="did fairseq-eval-lm finish"):
        perplexity.parse("Evaluated 10 tokens\n")


def test_average_checkpoints_takes_the_last_epochs_by_number(tmp_path):
    for epoch, value in ((2, 100.0), (9, 1.0), (10, 2.0), (11, 6.0)):
        torch.save({"model": {"w": torch.full((2,), value), "n": torch.tensor([epoch])}, "extra_state": {"epoch": epoch},
                    "last_optimizer_state": {"big": 1}}, tmp_path / f"checkpoint{epoch}.pt")
    (tmp_path / "checkpoint_last.pt").write_bytes(b"not an epoch checkpoint")
    paths = average_checkpoints.last_epoch_checkpoints(str(tmp_path), 3)
    assert [os.path.basename(p) for p in paths] == ["checkpoint9.pt", "checkpoint10.pt", "checkpoint11.pt"]
    run_script(average_checkpoints, "--inputs", tmp_path, "--num-epoch-checkpoints", 3, "--output", tmp_path / "avg.pt")
    state = torch.load(tmp_path / "avg.pt", weights_only=True)
    assert torch.equal(state["model"]["w"], torch.full((2,), 3.0))
    assert state["model"]["n"].dtype == torch.int64 and state["model"]["n"].item() == 10
    assert state["extra_state"] == {"epoch": 11} and state["last_optimizer_state"] is None
    with pytest.raises(ValueError, match="has only 4 epoch checkpoints"):
        average_checkpoints.last_epoch_checkpoints(str(tmp_path), 5)


def test_cnn_dm_stories_become_source_and_target_lines_in_url_list_order(tmp_path):
    urls = {"train": ["http://a/1", "http://a/2"], "val": ["http://a/3"], "test": ["http://a/4"]}
    for split, split_urls in urls.items():
        (tmp_path / "lists").mkdir(exist_ok=True)
        (tmp_path / "lists" / f"all_{split}.txt").write_text("\n".join(split_urls) + "\n")
        for url in split_urls:
            story = tmp_path / "cnn" / "stories" / (hashlib.sha1(url.encode()).hexdigest() + ".story")
            story.parent.mkdir(parents=True, exist_ok=True)
            story.write_text(f"(CNN) -- First paragraph of {url[-1]}\n\nSecond one.\n\n"
                             f"@highlight\n\nHighlight one\n\n@highlight\n\nHighlight two!\n")
    counts = cnn_dm_stories.convert(str(tmp_path), str(tmp_path / "lists"), str(tmp_path / "out"))
    assert counts == {"train": 2, "val": 1, "test": 1}
    assert (tmp_path / "out/train.source").read_text().splitlines() == [
        "(CNN) -- First paragraph of 1. Second one.", "(CNN) -- First paragraph of 2. Second one."]
    assert (tmp_path / "out/test.target").read_text() == "Highlight one. Highlight two!\n"
    (tmp_path / "lists/all_test.txt").write_text("http://a/missing\n")
    with pytest.raises(ValueError, match="1 of the 1 stories of all_test.txt are missing"):
        cnn_dm_stories.convert(str(tmp_path), str(tmp_path / "lists"), str(tmp_path / "out"))
