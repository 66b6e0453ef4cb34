"""The CPU dry run of the GPU run (scripts/gpu_check.sh, docs/gpu.md): the same command with TINY=1 (tiny
sizes, this checkout's environment, no install) must fill its results folder with the files a GPU session
brings back, with numbers in them, before any GPU time is spent on it."""

import json
import os
import re
import subprocess
import tarfile

import pytest

from tests.helpers import ROOT

NUMBER = re.compile(r"\d+\.\d+")


@pytest.mark.slow  # minutes: about 50 fairseq commands (docs/gpu.md gives the measured time)
def test_gpu_check_dry_run_fills_the_results_folder_with_numbers(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run(["bash", f"{ROOT}/scripts/gpu_check.sh", str(results)], cwd=ROOT, capture_output=True,
                          text=True, timeout=3600, env={**os.environ, "TINY": "1", "WORK": str(tmp_path / "work")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (results / "summary.md").read_text()
    rows = dict(re.findall(r"^\| (tests|bench|lm|mt) \| \d+ \| (\d+) \|", summary, re.M))
    assert rows == {"tests": "0", "bench": "0", "lm": "0", "mt": "0"}, summary[:2000]  # every part ran and passed
    assert "needs CUDA" in (results / "tests.txt").read_text()  # the CUDA tests skipped, saying why
    bench = json.loads((results / "bench.json").read_text())
    assert set(bench["train_wps"]) == {"fairseq transformer_lm p=0", "fairseq built-in p=0.5", "ours p=0", "ours p=0.5"}
    assert all(v > 0 for runs in bench["train_wps"].values() for v in runs)
    assert all(v > 1 for v in bench["eval_perplexity"].values()) and len(bench["eval_perplexity"]) == 2
    for section in ("bench/bench.md", "mini_lm/convergence.md", "mini_lm/results.md", "mini_mt/convergence.md",
                    "mini_mt/results_both/results.md"):
        body = summary.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
        assert len(NUMBER.findall(body)) >= 4, (section, body[:1500])
    assert (results / "lm.png").stat().st_size > 1000 and (results / "mt.png").stat().st_size > 1000
    with tarfile.open(results / "logs.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("mini_lm/layerdrop/train.log") for n in names) and any(n.endswith("logs/tests.log") for n in names)
