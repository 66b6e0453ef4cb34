"""scripts/data/prepare_glue.py on tiny TSVs in the GLUE layout written here, with a tiny GPT-2 BPE learned here
(scripts/data/recipe_samples.py's write_gpt2_bpe): the columns fairseq's preprocess_GLUE_tasks.sh takes, its
header and QQP rules, STS-B's scaled scores, and the binarized result as fairseq's sentence_prediction reads it."""

import json

import pytest
from omegaconf import OmegaConf

from scripts.data import prepare_glue, recipe_samples
from tests.helpers import run_main

SENTENCES = ["The cat sat.", "A dog ran home!", "Is it raining?", "  Spaces around  ", "We're here, aren't we?",
             "Zürich is café-friendly.", "Numbers 12 and 3.5 too."]


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def tsv(*fields):
    return "\t".join(map(str, fields))


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    root = tmp_path_factory.mktemp("bpe")
    recipe_samples.write_gpt2_bpe(str(root), SENTENCES * 3, merges=40)
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    return root, get_encoder(str(root / "encoder.json"), str(root / "vocab.bpe"))


def glue_sample(root):
    """RTE, CoLA, QQP, STS-B and MNLI files with the GLUE download script's columns and headers."""
    a, b, c = SENTENCES[0], SENTENCES[1], SENTENCES[2]
    write(root / "RTE/train.tsv", ["index\tsentence1\tsentence2\tlabel", tsv(0, a, b, "entailment"),
                                   tsv(1, c, SENTENCES[3], "not_entailment")])
    write(root / "RTE/dev.tsv", ["index\tsentence1\tsentence2\tlabel", tsv(0, b, a, "not_entailment")])
    write(root / "RTE/test.tsv", ["index\tsentence1\tsentence2", tsv(0, SENTENCES[4], SENTENCES[5])])
    # CoLA: train and dev without a header; the test file has one
    write(root / "CoLA/train.tsv", [tsv("gj04", 1, "", a), tsv("gj04", 0, "*", b)])
    write(root / "CoLA/dev.tsv", [tsv("cj99", 1, "", c)])
    write(root / "CoLA/test.tsv", ["index\tsentence", tsv(0, SENTENCES[6])])
    qqp = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
    write(root / "QQP/train.tsv", [qqp, tsv(0, 1, 2, a, b, 0), tsv(1, 3, 4, "cut short"), tsv(2, 5, 6, c, c, 1),
                                   tsv(3, 7, 8, a, b, 1, "extra")])
    write(root / "QQP/dev.tsv", [qqp, tsv(0, 1, 2, b, c, 1)])
    write(root / "QQP/test.tsv", ["id\tquestion1\tquestion2", tsv(0, c, a)])
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    write(root / "STS-B/train.tsv", [head + "\tscore", tsv(0, "g", "f", "y", "o", "s", "s", a, b, "5.000"),
                                     tsv(1, "g", "f", "y", "o", "s", "s", b, c, "0.750")])
    write(root / "STS-B/dev.tsv", [head + "\tscore", tsv(0, "g", "f", "y", "o", "s", "s", c, a, "3.2")])
    write(root / "STS-B/test.tsv", [head, tsv(0, "g", "f", "y", "o", "s", "s", a, a)])
    mnli = "index\tpromptID\tpairID\tgenre\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2"
    parses = ("(a)", "(b)", "(A)", "(B)")
    write(root / "MNLI/train.tsv", [mnli + "\tlabel1\tgold_label", tsv(0, 1, "1n", "g", *parses, a, b, "x", "neutral"),
                                    tsv(1, 2, "2e", "g", *parses, b, b, "x", "entailment")])
    for name, label in (("dev_matched", "contradiction"), ("dev_mismatched", "entailment")):
        write(root / f"MNLI/{name}.tsv", [mnli + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label",
                                          tsv(0, 1, "1c", "g", *parses, c, a, "x", "x", "x", "x", "x", label)])
    for name in ("test_matched", "test_mismatched"):
        write(root / f"MNLI/{name}.tsv", [mnli, tsv(0, 1, "1", "g", *parses, a, c)])
    return root


def decoded(path, encoder):
    return [encoder.decode([int(t) for t in line.split()]) for line in path.read_text().splitlines()]


def test_the_columns_headers_and_labels_are_fairseqs(tmp_path, bpe):
    bpe_dir, encoder = bpe
    glue = glue_sample(tmp_path / "glue")
    proc = run_main(prepare_glue.main, glue, tmp_path / "out", "--tasks", "RTE,CoLA,QQP,STS-B,MNLI",
                    "--encoder-json", bpe_dir / "encoder.json", "--vocab-bpe", bpe_dir / "vocab.bpe")
    out = tmp_path / "out"
    a, b, c = SENTENCES[:3]
    assert decoded(out / "RTE/train.input0", encoder) == [a, c]
    assert decoded(out / "RTE/train.input1", encoder) == [b, "Spaces around"]  # stripped, as fairseq's encoder does
    assert (out / "RTE/train.label").read_text() == "entailment\nnot_entailment\n"
    assert decoded(out / "RTE/test.input1", encoder) == [SENTENCES[5]] and not (out / "RTE/test.label").exists()
    assert decoded(out / "CoLA/train.input0", encoder) == [a, b] and (out / "CoLA/train.label").read_text() == "1\n0\n"
    assert decoded(out / "CoLA/valid.input0", encoder) == [c] and not (out / "CoLA/train.input1").exists()
    assert decoded(out / "CoLA/test.input0", encoder) == [SENTENCES[6]]
    assert decoded(out / "QQP/train.input1", encoder) == [b, c] and (out / "QQP/train.label").read_text() == "0\n1\n"
    assert "QQP: train 2, valid 1, test 1 (2 malformed lines dropped, as fairseq does)" in proc.stdout
    assert decoded(out / "QQP/test.input0", encoder) == [c]
    assert (out / "STS-B/train.label").read_text() == "1\n0.15\n" and (out / "STS-B/valid.label").read_text() == "0.64\n"
    assert decoded(out / "MNLI/train.input1", encoder) == [b, b]
    assert (out / "MNLI/train.label").read_text() == "neutral\nentailment\n"
    assert (out / "MNLI/valid.label").read_text() == "contradiction\n"  # dev's gold label (column 16)
    assert (out / "MNLI/valid1.label").read_text() == "entailment\n"  # the mismatched dev set
    assert decoded(out / "MNLI/test1.input1", encoder) == [c]
    # the ids are those of fairseq's GPT-2 encoder on the stripped text, space-separated
    first = (out / "RTE/train.input0").read_text().splitlines()[0]
    assert first == " ".join(map(str, encoder.encode(a))) and len(first.split()) < len(a)


def test_binarized_tasks_load_in_fairseqs_sentence_prediction(tmp_path, bpe):
    bpe_dir, _ = bpe
    glue = glue_sample(tmp_path / "glue")
    run_main(prepare_glue.main, glue, tmp_path / "out", "--tasks", "RTE,STS-B,MNLI", "--dict", bpe_dir / "dict.txt",
             "--encoder-json", bpe_dir / "encoder.json", "--vocab-bpe", bpe_dir / "vocab.bpe")
    from fairseq.tasks.sentence_prediction import SentencePredictionConfig, SentencePredictionTask

    def task(name, classes, regression=False):
        cfg = OmegaConf.structured(SentencePredictionConfig(data=str(tmp_path / "out" / f"{name}-bin"),
                                                            num_classes=classes, init_token=0, separator_token=2))
        OmegaConf.update(cfg, "regression_target", regression, force_add=True)
        OmegaConf.update(cfg, "classification_head_name", "head", force_add=True)
        OmegaConf.update(cfg, "seed", 1, force_add=True)
        return SentencePredictionTask.setup_task(cfg)

    rte = task("RTE", 2)
    rte.load_dataset("train")
    labels = [rte.label_dictionary[int(rte.datasets["train"][i]["target"]) + rte.label_dictionary.nspecial]
              for i in range(2)]
    assert sorted(labels) == ["entailment", "not_entailment"]
    rte.load_dataset("test")  # inputs without labels
    assert "target" not in rte.datasets["test"][0]
    sts = task("STS-B", 1, regression=True)
    sts.load_dataset("valid")
    assert sts.datasets["valid"][0]["target"] == [pytest.approx(0.64)]
    mnli = task("MNLI", 3)
    mnli.load_dataset("valid1")
    assert mnli.label_dictionary[int(mnli.datasets["valid1"][0]["target"]) + 4] == "entailment"


def test_bad_inputs_are_refused_naming_them(tmp_path, bpe):
    bpe_dir, _ = bpe
    glue = glue_sample(tmp_path / "glue")
    args = ["--encoder-json", bpe_dir / "encoder.json", "--vocab-bpe", bpe_dir / "vocab.bpe"]
    proc = run_main(prepare_glue.main, glue, tmp_path / "out", "--tasks", "RTE,WNLI", *args, check=False)
    assert proc.returncode == 2 and "unknown task(s) ['WNLI']" in proc.stderr
    proc = run_main(prepare_glue.main, glue, tmp_path / "out", "--tasks", "SST-2", *args, check=False)
    assert proc.returncode == 1 and "no SST-2 folder in" in proc.stderr
    write(glue / "RTE/dev.tsv", ["index\tsentence1\tsentence2\tlabel", tsv(0, "only one sentence")])
    proc = run_main(prepare_glue.main, glue, tmp_path / "out", "--tasks", "RTE", *args, check=False)
    assert proc.returncode == 1 and "RTE/dev.tsv:2 has 2 tab-separated fields, RTE needs 4" in proc.stderr


def test_the_sample_bpe_covers_every_byte_and_round_trips(bpe):
    bpe_dir, encoder = bpe
    vocab = json.loads((bpe_dir / "encoder.json").read_text())
    assert len(vocab) == 256 + 40 and len((bpe_dir / "dict.txt").read_text().splitlines()) == len(vocab)
    for text in SENTENCES + ["unseen wörds ✓"]:
        assert encoder.decode(encoder.encode(text)) == text
