"""recipes/mini_lm.sh's NORM setting builds the norm its help names: the recipe's train stage is run with a
stand-in fairseq-train that records its arguments (no training), and the model is then built from exactly those
arguments by fairseq's own parser, as fairseq-train would build it."""

import os
import stat
import subprocess
import sys

import pytest
from tests.helpers import ROOT, build_model

RECORDER = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "$NORM_TEST_ARGV"
"""


def recorded_train_arguments(tmp_path, lm_data, env):
    """The arguments the recipe's train stage gives fairseq-train for the 8-layer baseline (--smoke sizes)."""
    bin_dir = tmp_path / "bin_stub"
    bin_dir.mkdir()
    for name, body in (("fairseq-train", RECORDER), ("fairseq-layerdrop", "#!/usr/bin/env bash\nexit 0\n")):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    work = tmp_path / "work"
    work.mkdir()
    (work / "bin").symlink_to(lm_data)  # the data stage skips a directory that has dict.txt
    argv_file = tmp_path / "argv"
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "recipes", "mini_lm.sh"), "--smoke", "--work-dir", str(work),
         "--stage", "data,train"],
        capture_output=True, text=True,
        env={**os.environ, "PYTHON": sys.executable, "FAIRSEQ_BIN": str(bin_dir), "FORCE_CPU": "1", "PARALLEL": "0",
             "MODEL_NAMES": "baseline", "NORM_TEST_ARGV": str(argv_file), **env},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    argv = argv_file.read_text().split("\0")[:-1]
    assert argv[0] == str(work / "bin") and "--arch" in argv
    return argv[1:]


@pytest.mark.parametrize("norm, expected", [
    (None, (True, True)),  # the default: pre-norm, with a final layer norm
    ("--decoder-post-norm", (False, False)),  # post-norm: a layer norm after each block, no final one
    ("", (False, False)),  # NORM= : --arch transformer_lm_layerdrop without --decoder-normalize-before
])
def test_norm_setting_trains_the_norm_it_names(tmp_path, lm_data, norm, expected):
    args = recorded_train_arguments(tmp_path, lm_data, {} if norm is None else {"NORM": norm})
    model, _ = build_model(lm_data, *args)
    decoder = model.decoder
    assert len(decoder.layers) == 8
    assert {layer.normalize_before for layer in decoder.layers} == {expected[0]}
    assert (decoder.layer_norm is not None) == expected[1]
