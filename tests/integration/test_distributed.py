"""Two CPU workers (gloo) train with LayerDrop under fairseq's c10d and legacy DDP and drop the same layers.

Each rank is launched as its own ``fairseq-train`` process (torchrun does not work with fairseq on
a CPU: its env init divides by the GPU count). ``--layerdrop-draws-log`` makes every rank write each
step's drop decisions; the test compares the two ranks' files line by line.
"""

import json
import os
import socket
import subprocess

import pytest
from tests.helpers import BIN, PLUGIN, json_logs


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_two_workers(data, tmp_path, ddp_backend, structure):
    port = free_port()
    common = [
        os.path.join(BIN, "fairseq-train"), str(data), "--user-dir", PLUGIN, "--task", "language_modeling",
        "--tokens-per-sample", "32", "--arch", "transformer_lm_layerdrop_tiny", "--decoder-layers", "4",
        "--decoder-layerdrop", "0.5", "--layerdrop-structure", structure, "--cpu", "--optimizer", "adam",
        "--lr", "0.005", "--max-tokens", "256", "--update-freq", "2", "--seed", "3", "--max-update", "4",
        "--log-format", "json", "--log-interval", "1", "--no-progress-bar", "--disable-validation", "--no-save",
        "--distributed-no-spawn", "--distributed-world-size", "2", "--distributed-backend", "gloo",
        "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--ddp-backend", ddp_backend,
        "--layerdrop-draws-log", str(tmp_path / "draws"),
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([*common, "--distributed-rank", str(rank)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for rank in range(2)]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=240)[0])
    finally:
        for proc in procs:
            proc.kill()
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-4000:]
    return outputs


def read_draws(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("ddp_backend, structure", [("c10d", "layer"), ("legacy_ddp", "sublayer")])
def test_two_workers_train_and_drop_the_same_layers(lm_data, tmp_path, ddp_backend, structure):
    rank0, _ = train_two_workers(lm_data, tmp_path, ddp_backend, structure)
    logs = json_logs(rank0, "train_inner")
    assert [int(r["num_updates"]) for r in logs] == [1, 2, 3, 4]
    draws = [read_draws(tmp_path / f"draws.rank{rank}") for rank in range(2)]
    # 4 updates x 2 micro-batches, the same decisions on both ranks, and not all alike
    assert [(d["update"], d["micro_batch"]) for d in draws[0]] == [(u, m) for u in range(4) for m in range(2)]
    assert draws[0] == draws[1]
    assert len({str(d["plans"]) for d in draws[0]}) > 1 and any("-" in d["plans"] for d in draws[0])
    if ddp_backend == "c10d":
        assert "setting find_unused_parameters=True" in rank0
