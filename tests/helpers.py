"""What tests share besides fixtures: paths, a runner for fairseq's console commands with the plugin
as --user-dir, and a reader of fairseq's JSON log lines. Import as `from tests.helpers import ...`."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(ROOT, "fairseq_layerdrop")
BIN = os.path.dirname(sys.executable)


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


def build_model(data_dir, *args):
    """``(model, task)`` built in this process as ``fairseq-train DATA_DIR --user-dir PLUGIN --cpu ARGS...`` would."""
    from scripts.fairseq_in_process import build_model as build  # moves into the package with the layout issue

    return build(data_dir, *args)
