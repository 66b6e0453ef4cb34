"""The export command (fairseq-layerdrop-prune) on a small synthetic checkpoint, in this process:
a save that fails half-way or is killed leaves nothing, the permissions follow the umask, no
optimizer or EMA state travels, and ordinary mistakes are refused in one line naming the file."""

import os
import re
import signal
import stat
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

import fairseq_layerdrop  # noqa: F401  (allow-lists the plugin's classes for torch.load)
from fairseq_layerdrop.compat import LoadWithUserDirMark, mark_plugin_state_dict
from fairseq_layerdrop.pruning import export
from tests.helpers import ROOT


def synthetic_checkpoint(num_layers=4, width=3):
    """A raw fairseq-style checkpoint: layer i's weight is filled with i, plus optimizer and EMA state."""
    model = OrderedDict()
    model["decoder.embed_tokens.weight"] = torch.full((5, width), -1.0)
    for i in range(num_layers):
        model[f"decoder.layers.{i}.fc1.weight"] = torch.full((width, width), float(i))
        model[f"decoder.layers.{i}.fc1.bias"] = torch.full((width,), float(i))
    return {
        "cfg": {"model": {"_name": "transformer_lm_layerdrop", "decoder_layers": num_layers}, "task": {}},
        "model": mark_plugin_state_dict(model),
        "last_optimizer_state": {"state": {0: {"exp_avg": torch.ones(width)}}},
        "optimizer_history": [{"num_updates": 26}],
        "extra_state": {"epoch": 2, "ema": {"decoder.layers.0.fc1.weight": torch.zeros(width, width)}},
    }


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "in" / "full.pt"
    path.parent.mkdir()
    torch.save(synthetic_checkpoint(), path)
    return path


def run(*argv):
    """Run the export's main as the console command does; return (exit message or None)."""
    try:
        export.main([str(a) for a in argv])
    except SystemExit as stop:
        return str(stop.code)
    return None


def test_export_holds_exactly_the_kept_layers_and_no_optimizer_or_ema_state(checkpoint, tmp_path):
    source = torch.load(checkpoint, weights_only=True)
    assert "last_optimizer_state" in source and "ema" in source["extra_state"]  # the input had both
    assert run(checkpoint, tmp_path / "out.pt", "--decoder-layers-to-keep", "3,1") is None
    state = torch.load(tmp_path / "out.pt", weights_only=True)
    assert "last_optimizer_state" not in state
    assert "ema" not in state["extra_state"] and state["extra_state"]["epoch"] == 2
    assert state["cfg"]["model"]["decoder_layers"] == 2
    layers = sorted({k.split(".")[2] for k in state["model"] if ".layers." in k})
    assert layers == ["0", "1"]
    assert state["model"]["decoder.layers.0.fc1.weight"].unique().tolist() == [3.0]  # old layer 3 is new layer 0
    assert state["model"]["decoder.layers.1.fc1.bias"].unique().tolist() == [1.0]
    assert torch.equal(state["model"]["decoder.embed_tokens.weight"], source["model"]["decoder.embed_tokens.weight"])
    assert isinstance(getattr(state["model"], "load_with_user_dir", None), LoadWithUserDirMark)  # --user-dir mark kept


def half_written_save(obj, f, *args, **kwargs):
    """torch.save that writes part of a file and then fails (a full disk)."""
    f.write(b"\x80" * 4096)
    f.flush()
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_save_that_fails_half_way_leaves_no_output_and_no_temporary_file(tmp_path, monkeypatch, overwrite):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if overwrite:
        (out_dir / "small.pt").write_bytes(b"the previous export")
    monkeypatch.setattr(torch, "save", half_written_save)
    with pytest.raises(OSError, match="No space left"):
        export.save_atomically({"model": {}}, str(out_dir / "small.pt"), overwrite=overwrite)
    if overwrite:  # the old file is untouched, and nothing else is there
        assert os.listdir(out_dir) == ["small.pt"]
        assert (out_dir / "small.pt").read_bytes() == b"the previous export"
    else:
        assert os.listdir(out_dir) == []


def test_the_command_reports_a_failed_write_in_one_line_and_leaves_nothing(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", half_written_save)
    message = run(checkpoint, tmp_path / "out.pt", "--prune-to", "2")
    assert message.startswith(f"error: could not write {tmp_path / 'out.pt'} (No space left on device)")
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_kill_9_in_the_middle_of_the_save_leaves_nothing_in_the_output_directory(checkpoint, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = (
        "import os, signal, sys, torch\n"
        "from fairseq_layerdrop.pruning import export\n"
        "def killed_save(obj, f, *a, **k):\n"
        "    f.write(b'x' * 100000); f.flush(); os.fsync(f.fileno())\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "torch.save = killed_save\n"
        "export.main(sys.argv[1:])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(checkpoint), str(out_dir / "small.pt"), "--prune-to", "2"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert os.listdir(out_dir) == []  # no output and no hidden .prune-*.tmp


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_the_export_gets_the_permissions_the_umask_gives(checkpoint, tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        assert run(checkpoint, tmp_path / "out.pt", "--prune-to", "2") is None
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "out.pt").st_mode) == mode


def test_overwrite_replaces_the_old_export_and_without_it_the_old_file_stays(checkpoint, tmp_path):
    (tmp_path / "out.pt").write_bytes(b"old")
    assert "exists; pass --overwrite" in run(checkpoint, tmp_path / "out.pt", "--prune-to", "2")
    assert (tmp_path / "out.pt").read_bytes() == b"old"
    assert run(checkpoint, tmp_path / "out.pt", "--prune-to", "2", "--overwrite") is None
    assert torch.load(tmp_path / "out.pt", weights_only=True)["cfg"]["model"]["decoder_layers"] == 2
    assert sorted(os.listdir(tmp_path)) == ["in", "out.pt"]


def make_input(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    if kind == "random":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "no_model":
        torch.save({"weights": torch.zeros(2)}, path)
    elif kind == "no_config":
        torch.save({"model": {"decoder.layers.0.w": torch.zeros(2)}}, path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("random", r"random.pt is not a fairseq checkpoint: torch's safe loader cannot read it \(UnpicklingError"),
    ("text", r"text.pt is not a fairseq checkpoint: torch's safe loader cannot read it"),
    ("empty", r"empty.pt is empty, not a checkpoint"),
    ("no_model", r"no_model.pt is a torch file but not a fairseq checkpoint \(it has no 'model' state dict\)"),
    ("no_config", r"the checkpoint has neither cfg.model nor args"),
    ("missing", r"no checkpoint at .*missing.pt"),
])
def test_a_wrong_input_is_refused_in_one_line_naming_it(tmp_path, kind, message):
    source = make_input(tmp_path, kind)
    refusal = run(source, tmp_path / "small.pt", "--prune-to", "1")
    assert refusal is not None and refusal.startswith("error: ") and "\n" not in refusal
    assert re.search(message, refusal), refusal
    assert "weights_only" not in refusal  # torch's advice to load unsafely is not passed on
    assert not (tmp_path / "small.pt").exists()


def test_an_output_that_cannot_be_written_is_refused_before_loading(checkpoint, tmp_path, monkeypatch):
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a))
    (tmp_path / "a_dir").mkdir()
    assert run(checkpoint, tmp_path / "a_dir", "--prune-to", "2") == (
        f"error: the output {tmp_path / 'a_dir'} is a directory; give a file path, e.g. {tmp_path / 'a_dir' / 'pruned.pt'}")
    refusal = run(checkpoint, tmp_path / "no" / "such" / "small.pt", "--prune-to", "2")
    assert refusal == f"error: the output directory {tmp_path / 'no' / 'such'} does not exist; create it first " \
                      f"(mkdir -p {tmp_path / 'no' / 'such'})"
    assert run(tmp_path, tmp_path / "small.pt", "--prune-to", "2") == \
        f"error: {tmp_path} is a directory, not a checkpoint file; give the .pt file"
    assert loads == []  # refused before anything was read
    assert sorted(os.listdir(tmp_path)) == ["a_dir", "in"]
