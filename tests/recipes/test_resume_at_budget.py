"""recipes/lib/mini.sh's train_model: a model whose checkpoint_last.pt is already at its budget (a run stopped after
saving it but before writing its done record) is not resumed, because fairseq-train resumed at its --max-update
still runs one more update; a checkpoint below the budget is resumed."""

import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT

LIB = os.path.join(ROOT, "recipes", "lib")
FAKE_TRAIN = """#!/usr/bin/env bash
echo "$@" >> "$(dirname "$0")/calls"
"""


@pytest.mark.parametrize("saved_at, resumed", [(5, False), (7, False), (3, True)])
def test_train_model_resumes_only_a_checkpoint_below_its_budget(tmp_path, saved_at, resumed):
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir()
    (bin_dir / "fairseq-train").write_text(FAKE_TRAIN)
    (bin_dir / "fairseq-train").chmod(0o755)
    (work / "m").mkdir(parents=True)
    # the part of a fairseq checkpoint that records its updates (fairseq's checkpoint_utils.save_checkpoint)
    torch.save({"optimizer_history": [{"num_updates": 1}, {"num_updates": saved_at}]}, work / "m" / "checkpoint_last.pt")
    script = (f'RECIPE=test; source "{LIB}/stages.sh"; source "{LIB}/mini.sh"; set +e\n'
              'WORK_DIR=$1 FAIRSEQ_BIN=$2 PYTHON=$3 UPDATES=5 SEED=1 WARMUP=1 PARALLEL=0 DEVICE_ARGS=--cpu TRAIN_ARGS=\n'
              'model_flags() { MODEL_FLAGS=(--arch x); }\n'
              'train_model m:2:0; echo "status $?"\n')
    proc = subprocess.run(["bash", "-c", script, "bash", str(work), str(bin_dir), sys.executable],
                          capture_output=True, text=True, timeout=120)
    assert "status 0" in proc.stdout, proc.stdout + proc.stderr
    assert (bin_dir / "calls").exists() is resumed
    if resumed:
        assert "--max-update 5 " in (bin_dir / "calls").read_text()
    assert (work / "m" / "done").read_text().strip() == "5"
