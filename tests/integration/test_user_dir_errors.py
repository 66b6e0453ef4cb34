"""What a user sees when --user-dir is missing or wrong."""

import os

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
    assert "Perplexity" in evaluated.stderr + evaluated.stdout


def test_user_dir_pointing_nowhere_names_the_missing_path(translation_data, tmp_path):
    missing = tmp_path / "no_such_plugin"
    proc = fairseq("fairseq-train", translation_data, "--user-dir", missing, "--arch", "transformer_layerdrop",
                   check=False)
    assert proc.returncode != 0
    assert f"FileNotFoundError: {os.path.abspath(missing)}" in proc.stderr
