"""What a user sees when --user-dir is missing or wrong."""

import os
import re

import pytest

from tests.helpers import PLUGIN, fairseq


def test_plugin_translation_checkpoint_without_user_dir_names_the_remedy(translation_data, mt_checkpoint):
    proc = fairseq("fairseq-generate", translation_data, "--path", mt_checkpoint, "--cpu", "--max-len-b", "5",
                   check=False)
    assert proc.returncode != 0
    assert "fairseq_layerdrop.compat.LoadWithUserDirArgs" in proc.stderr, proc.stderr[-2000:]


def test_plugin_lm_checkpoint_without_user_dir_names_the_remedy(lm_data, lm_checkpoint):
    proc = fairseq("fairseq-eval-lm", lm_data, "--path", lm_checkpoint, "--cpu", "--tokens-per-sample", "64",
                   check=False)
    assert proc.returncode != 0
    assert "fairseq_layerdrop.compat.LoadWithUserDirMark" in proc.stderr, proc.stderr[-2000:]


def test_plugin_checkpoints_load_with_user_dir(translation_data, mt_checkpoint, lm_data, lm_checkpoint):
    generated = fairseq("fairseq-generate", translation_data, "--path", mt_checkpoint, "--cpu", "--max-len-b", "5",
                        "--required-batch-size-multiple", "1",
                        "--user-dir", PLUGIN).stdout
    assert generated.count("\nH-") + generated.startswith("H-") == 50
    evaluated = fairseq("fairseq-eval-lm", lm_data, "--path", lm_checkpoint, "--cpu", "--tokens-per-sample", "64",
                        "--user-dir", PLUGIN)
    loss, ppl = map(float, re.search(r"Loss \(base 2\): ([0-9.]+), Perplexity: ([0-9.]+)",
                                      evaluated.stderr + evaluated.stdout).groups())
    assert ppl == pytest.approx(2 ** loss, rel=1e-3)
    vocabulary = sum(1 for _ in open(os.path.join(lm_data, "dict.txt"))) + 4
    # trained: well below a uniform guess over the vocabulary, and above the toy language's 3 successors per word
    assert 3.0 < ppl < vocabulary / 2, (ppl, vocabulary)


def test_user_dir_pointing_nowhere_names_the_missing_path(translation_data, tmp_path):
    missing = tmp_path / "no_such_plugin"
    proc = fairseq("fairseq-train", translation_data, "--user-dir", missing, "--arch", "transformer_layerdrop",
                   check=False)
    assert proc.returncode != 0
    assert f"FileNotFoundError: {os.path.abspath(missing)}" in proc.stderr
