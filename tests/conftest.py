"""Shared fixtures: tiny generated corpora binarized by fairseq-preprocess, and a runner for
fairseq's own command-line tools with the plugin passed as --user-dir."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(ROOT, "fairseq_layerdrop")
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import toy_data  # noqa: E402
from fairseq_in_process import build_model  # noqa: E402,F401


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long runs, skipped unless --run-slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def fairseq(command, *args, check=True, cwd=None):
    """Run one of fairseq's console commands (fairseq-train, ...) and return the completed process."""
    proc = subprocess.run(
        [os.path.join(BIN, command), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{command} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def json_logs(output, tag):
    """The JSON payloads of fairseq log lines with the given tag ("train_inner", "train", "valid")."""
    records = []
    for line in output.splitlines():
        marker = f"| {tag} | "
        if marker in line:
            payload = line.split(marker, 1)[1]
            if payload.startswith("{"):
                records.append({k: _number(v) for k, v in json.loads(payload).items()})
    return records


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


TRAIN_COMMON = [
    "--cpu", "--optimizer", "adam", "--lr", "0.005", "--max-tokens", "2000", "--seed", "3",
    "--log-format", "json", "--log-interval", "1", "--no-progress-bar", "--no-epoch-checkpoints",
]


@pytest.fixture(scope="session")
def translation_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation")
    toy_data.write_translation(str(root / "raw"), train=600, valid=100, test=50)
    fairseq(
        "fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
        "--trainpref", root / "raw/train", "--validpref", root / "raw/valid", "--testpref", root / "raw/test",
        "--destdir", root / "bin", "--workers", "1",
    )
    return root / "bin"


@pytest.fixture(scope="session")
def lm_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    toy_data.write_lm(str(root / "raw"), train=800, valid=100, test=100)
    fairseq(
        "fairseq-preprocess", "--only-source", "--trainpref", root / "raw/train.txt",
        "--validpref", root / "raw/valid.txt", "--testpref", root / "raw/test.txt",
        "--destdir", root / "bin", "--workers", "1",
    )
    return root / "bin"



@pytest.fixture(scope="session")
def mt_checkpoint(translation_data, tmp_path_factory):
    """A transformer_layerdrop_tiny checkpoint trained for 2 epochs on the toy translation data."""
    save_dir = tmp_path_factory.mktemp("mt_checkpoint")
    fairseq("fairseq-train", translation_data, *TRAIN_COMMON, "--save-dir", save_dir, "--user-dir", PLUGIN,
            "--arch", "transformer_layerdrop_tiny", "--max-epoch", "2")
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def lm_checkpoint(lm_data, tmp_path_factory):
    """A transformer_lm_layerdrop_tiny checkpoint trained for 2 epochs on the toy LM data."""
    save_dir = tmp_path_factory.mktemp("lm_checkpoint")
    fairseq("fairseq-train", lm_data, *TRAIN_COMMON, "--save-dir", save_dir, "--user-dir", PLUGIN,
            "--task", "language_modeling", "--tokens-per-sample", "64",
            "--arch", "transformer_lm_layerdrop_tiny", "--max-epoch", "2")
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def fairseq_mt_checkpoint(translation_data, tmp_path_factory):
    """A checkpoint of fairseq's own `transformer` (6 + 6 layers of width 64), trained without the plugin."""
    save_dir = tmp_path_factory.mktemp("fairseq_mt_checkpoint")
    fairseq("fairseq-train", translation_data, *TRAIN_COMMON, "--save-dir", save_dir, "--arch", "transformer",
            "--encoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128", "--encoder-attention-heads", "4",
            "--decoder-attention-heads", "4", "--max-epoch", "2")
    return save_dir / "checkpoint_last.pt"
