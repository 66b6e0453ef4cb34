"""``fairseq-layerdrop report`` refuses, in one line naming it, a file that is not a sweep, a label given
twice, an --out that is a file (or below one), --full/--half without a target they would be the depths of, a
sweep of another metric than --metric, and targets of another kind; none of these refusals writes anything."""

import os

import pytest

from fairseq_layerdrop.cli import report


def refusal(capsys, *argv):
    with pytest.raises(SystemExit) as stop:
        report.main([str(a) for a in argv], prog="fairseq-layerdrop report")
    message = stop.value.code if isinstance(stop.value.code, str) else capsys.readouterr().err.strip().splitlines()[-1]
    return message


@pytest.fixture
def sweep(tmp_path):
    path = tmp_path / "sweep.csv"
    path.write_text("depth,strategy,kept,parameters,quality,seconds\n6,every-other,decoder:0,100,12.5,1\n")
    return path


def test_report_refuses_what_it_would_misread_or_ignore(capsys, tmp_path, sweep):
    other = tmp_path / "other.csv"
    other.write_text("model,score\na,1\n")
    assert refusal(capsys, f"a={other}", "--out", tmp_path / "r", "--metric", "perplexity") == (
        f"fairseq-layerdrop report: {other} is not a sweep.csv of fairseq-layerdrop sweep "
        "(no column depth, strategy, kept, parameters, quality)")
    bad = tmp_path / "bad.csv"
    bad.write_text("depth,strategy,kept,parameters,quality\n6,top,decoder:0,1,n/a\n")
    assert refusal(capsys, f"a={bad}", "--out", tmp_path / "r", "--metric", "perplexity") == (
        f"fairseq-layerdrop report: {bad} line 2: depth '6' and quality 'n/a' must be numbers")
    assert refusal(capsys, f"a={sweep}", f"a={sweep}", "--out", tmp_path / "r", "--metric", "perplexity") == (
        "fairseq-layerdrop report: the label 'a' is given twice; give each sweep its own label")
    assert "--full and --half are the depths of the targets" in refusal(
        capsys, f"a={sweep}", "--out", tmp_path / "r", "--metric", "perplexity", "--full", "6", "--half", "3")
    (tmp_path / "taken").write_text("x")
    assert f"--out {tmp_path / 'taken'} is a file" in refusal(
        capsys, f"a={sweep}", "--out", tmp_path / "taken", "--metric", "perplexity")
    assert not (tmp_path / "r").exists()


def write_sweep(path, metric=None, rows=((6, "every-other", 12.5), (3, "every-other", 30.5))):
    fields = ["depth", "strategy", "kept", "parameters", "quality", "seconds"] + (["metric"] if metric else [])
    lines = [",".join(fields)] + [",".join(map(str, [d, s, "decoder:0", 100, q, 1] + ([metric] if metric else [])))
                                  for d, s, q in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_report_refuses_sweeps_of_another_metric_and_targets_of_another_kind_writing_nothing(capsys, tmp_path):
    out = tmp_path / "r"
    ppl = write_sweep(tmp_path / "ppl.csv", "perplexity")
    assert refusal(capsys, f"LM={ppl}", "--out", out, "--metric", "BLEU") == (
        f"fairseq-layerdrop report: --metric BLEU, but {ppl} (LM) holds perplexity scores; give --metric "
        "perplexity, or sweeps of BLEU")
    # a sweep.csv written before the metric column: the header of the sweep.md beside it says
    (tmp_path / "old").mkdir()
    old = write_sweep(tmp_path / "old" / "sweep.csv")
    (tmp_path / "old" / "sweep.md").write_text("| depth | strategy | kept layers | parameters | BLEU | seconds |\n")
    assert refusal(capsys, f"MT={old}", "--out", out, "--metric", "perplexity") == (
        f"fairseq-layerdrop report: --metric perplexity, but {old} (MT) holds BLEU scores; give --metric BLEU, "
        "or sweeps of perplexity")
    bleu = write_sweep(tmp_path / "bleu.csv", "BLEU")
    assert refusal(capsys, f"a={bleu}", "--out", out, "--metric", "BLEU", "--check-lm", "a", "a", "a", "--full", "6",
                   "--half", "3").endswith(
        "error: --check-lm and --check-lrdrop check perplexities: give --metric perplexity, not BLEU")
    assert refusal(capsys, f"a={ppl}", "--out", out, "--metric", "perplexity", "--check-mt", "a", "a", "--full", "6",
                   "--half", "3").endswith(
        "error: --check-mt checks the share of BLEU (or ROUGE) kept: give --metric BLEU, not perplexity")
    assert not out.exists()


def test_report_writes_nothing_when_a_target_cannot_be_read_or_out_is_below_a_file(capsys, tmp_path, sweep):
    out = tmp_path / "r"
    # refused after reading the sweeps (results.csv was written before this refusal)
    assert refusal(capsys, f"a={sweep}", "--out", out, "--metric", "perplexity", "--check-lm", "a", "b", "a",
                   "--full", "6", "--half", "6") == "fairseq-layerdrop report: no model labelled 'b'; have a"
    assert refusal(capsys, f"a={sweep}", "--out", out, "--metric", "perplexity", "--check-lm", "a", "a", "a",
                   "--full", "6", "--half", "3") == "fairseq-layerdrop report: 'a' has no every-other result at depth 3"
    assert not out.exists()
    (tmp_path / "taken").write_text("x")
    assert refusal(capsys, f"a={sweep}", "--out", tmp_path / "taken" / "r", "--metric", "perplexity").endswith(
        f"error: --out {tmp_path / 'taken' / 'r'}: {tmp_path / 'taken'} is a file, not a directory")
    assert (tmp_path / "taken").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["sweep.csv", "taken"]
