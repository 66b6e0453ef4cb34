"""scripts/data/prepare_mini_bert.py on a PTB-format sample and the WordNet tasks of a WordNet-format sample (both
written here): the pre-training text (PTB, plus the train glosses or not), one BPE learned on it alone, the tasks
in its pieces with their labels."""

import pytest

from scripts.data import prepare_mini_bert, prepare_wordnet_tasks, recipe_samples
from tests.helpers import run_main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini_bert")
    ptb = root / "ptb"
    ptb.mkdir()
    words = "the company said its profit rose N % in the third quarter <unk> shares fell".split()
    for split, n in (("train", 200), ("valid", 20), ("test", 20)):
        (ptb / f"{split}.txt").write_text("".join(" ".join(words[(i + k) % len(words)] for k in range(8)) + "\n"
                                                  for i in range(n)))
    recipe_samples.write_wordnet(str(root / "wn"), scale=0.5)
    prepare_wordnet_tasks.prepare(str(root / "wn"), str(root / "tasks"), lowercase=True)
    return ptb, root / "tasks"


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_the_corpus_is_ptb_plus_train_glosses_in_one_bpe(tmp_path, inputs):
    ptb, tasks = inputs
    proc = run_main(prepare_mini_bert.main, ptb, tasks, tmp_path / "out", "--vocab-size", "120")
    out = tmp_path / "out"
    glosses = lines(tasks / "glosses_train.txt")
    train = lines(out / "pretrain/train.txt")
    assert len(train) == 200 + len(glosses) and len(lines(out / "pretrain/valid.txt")) == 20
    import sentencepiece as spm

    model = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    assert [model.decode(line.split()) for line in train] == lines(ptb / "train.txt") + glosses
    assert "<unk>" in train[0].split() or any("<unk>" in line.split() for line in train)  # one symbol, for fairseq
    for task, columns in (("supersense", ("input0",)), ("definition_match", ("input0", "input1"))):
        for split in ("train", "valid", "test"):
            for column in columns:
                assert [model.decode(p.split()) for p in lines(out / task / f"{split}.{column}")] == \
                    lines(tasks / task / f"{split}.{column}")
            assert lines(out / task / f"{split}.label") == lines(tasks / task / f"{split}.label")
    assert "pretrain/train: " in proc.stdout and "PTB + train glosses" in proc.stdout


def test_without_glosses_the_corpus_is_ptb_alone_and_a_missing_input_is_named(tmp_path, inputs):
    ptb, tasks = inputs
    run_main(prepare_mini_bert.main, ptb, tasks, tmp_path / "out", "--vocab-size", "120", "--no-glosses")
    assert len(lines(tmp_path / "out/pretrain/train.txt")) == 200
    proc = run_main(prepare_mini_bert.main, tmp_path, tasks, tmp_path / "x", check=False)
    assert proc.returncode == 1 and "no train.txt in" in proc.stderr and "prepare_ptb" in proc.stderr
