"""``fairseq-layerdrop report`` refuses, in one line naming it, a file that is not a sweep, a label given
twice, an --out that is a file, and --full/--half without a target they would be the depths of."""

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
