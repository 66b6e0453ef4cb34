"""``fairseq-train --fp16 --cpu`` with the plugin: refused at start naming the flag, before any data is read and
with nothing written (fairseq alone stops with 'Torch not compiled with CUDA enabled' after loading the data).
The other cases of the refusal: tests/unit/test_half_precision_on_cpu.py."""

import re

from tests.helpers import PLUGIN, TRAIN_COMMON, fairseq


def test_fp16_training_on_the_cpu_is_refused_before_the_data_is_read(lm_data, tmp_path):
    save_dir = tmp_path / "save"
    proc = fairseq("fairseq-train", lm_data, *TRAIN_COMMON, "--user-dir", PLUGIN, "--task", "language_modeling",
                   "--tokens-per-sample", "64", "--arch", "transformer_lm_layerdrop_tiny", "--max-update", "2",
                   "--save-dir", save_dir, "--fp16", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert output.strip().splitlines()[-1] == (
        "ValueError: --fp16 cannot train on the CPU (--cpu is given): fairseq's FP16 optimizer keeps the fp32 copy "
        "of the weights on CUDA, and would stop with 'Torch not compiled with CUDA enabled' after reading the data. "
        "Drop --fp16 to train in fp32 on the CPU, or train on a GPU")
    assert not re.search(r"loaded [0-9,]+ (examples|blocks) from", output)  # no split read, not even valid
    assert not save_dir.exists()
