"""The installed command `fairseq-layerdrop SUBCOMMAND`, run as a user runs it: the console script of this
environment, from a working directory outside the checkout (tmp_path), with relative paths. Every subcommand
answers --help (the dispatcher itself: tests/unit/test_command_dispatch.py); each does one small real run here, except `sweep` (tests/integration/test_pruning_commands.py)
and `gates` (tests/integration/test_gated_training.py), whose runs there go the same way."""

import csv
import json
import os
import subprocess

import pytest
import torch

import fairseq_layerdrop
from fairseq_layerdrop.pruning import kept_layers
from tests.helpers import BIN, fairseq

SUBCOMMANDS = ["prune", "sweep", "search", "contributions", "gates", "average", "report", "dir"]
AN_OPTION_OF = {"prune": "--prune-strategy", "sweep": "--strategies", "search": "--budget",
                "contributions": "--max-batches", "gates": "checkpoint", "average": "--num-epoch-checkpoints",
                "report": "--check-lm", "dir": "--user-dir"}


def test_every_subcommand_answers_help_and_dir_names_the_installed_package(tmp_path):
    calls = {name: ["fairseq-layerdrop", name, "--help"] for name in SUBCOMMANDS}
    calls.update({"dir run": ["fairseq-layerdrop", "dir"], "dir alias": ["fairseq-layerdrop-dir"]})
    started = {key: subprocess.Popen([os.path.join(BIN, argv[0]), *argv[1:]], cwd=tmp_path, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for key, argv in calls.items()}  # all at once: each spends most of its time importing fairseq
    done = {key: (proc.returncode, out, err) for key, proc in started.items() for out, err in [proc.communicate()]}

    for name in SUBCOMMANDS:
        code, out, err = done[name]
        assert code == 0, err[-2000:]
        assert out.startswith(f"usage: fairseq-layerdrop {name}") and AN_OPTION_OF[name] in out, out

    package = os.path.dirname(os.path.abspath(fairseq_layerdrop.__file__))
    for key in ("dir run", "dir alias"):
        code, out, err = done[key]
        assert code == 0, err[-2000:]
        assert out.strip() == package and os.path.isfile(os.path.join(out.strip(), "__init__.py"))


def test_prune_writes_the_pruned_checkpoint_where_it_is_run(lm_checkpoint, tmp_path):
    proc = fairseq("fairseq-layerdrop", "prune", lm_checkpoint, "small.pt", "--prune-to", "2",
                   "--prune-strategy", "every-other", cwd=tmp_path)
    expected = kept_layers("every-other", 6, 2)
    assert f"decoder: kept layers {','.join(map(str, expected))}" in proc.stdout
    full = torch.load(lm_checkpoint, map_location="cpu", weights_only=True)
    small = torch.load(tmp_path / "small.pt", map_location="cpu", weights_only=True)
    assert {k.split(".")[2] for k in small["model"] if k.startswith("decoder.layers.")} == {"0", "1"}
    assert small["cfg"]["model"]["decoder_layers"] == 2
    for new, old in enumerate(expected):  # the kept layers' weights, renumbered
        key = "decoder.layers.{}.fc1.weight"
        assert torch.equal(small["model"][key.format(new)], full["model"][key.format(old)])


def test_search_drops_a_layer_made_harmful_by_construction(lm_data, lm_checkpoint, tmp_path):
    state = torch.load(lm_checkpoint, map_location="cpu", weights_only=True)
    state["model"]["decoder.layers.2.fc2.weight"] *= 30.0  # layer 2 now scrambles its input
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    out = tmp_path / "search"
    proc = fairseq("fairseq-layerdrop", "search", "broken.pt", lm_data, "--keep", "5,4", "--budget", "12",
                   "--out", "search", cwd=tmp_path)
    assert "exhaustive search: 6 subsets" in proc.stdout  # C(6,5) = 6 fits the budget; C(6,4) = 15 does not
    assert "beam search over removals (beam 1): at most 11 evaluations" in proc.stdout
    result = json.load(open(out / "search.json"))["stacks"]["decoder"]
    assert 2 not in result["kept"]["5"] and 2 not in result["kept"]["4"]
    assert f"--decoder-layers-to-keep {','.join(map(str, result['kept']['4']))}" in proc.stdout
    rows = list(csv.DictReader(open(out / "search.csv")))
    assert len(rows) == 6 + 11 and {r["keep"] for r in rows} == {"5", "4"}
    best5 = min((r for r in rows if r["keep"] == "5"), key=lambda r: float(r["perplexity"]))
    assert best5["kept"] == ",".join(map(str, result["kept"]["5"])) == "0,1,3,4,5"
    with_2 = [float(r["perplexity"]) for r in rows if "2" in r["kept"].split(",")]
    assert min(with_2) > float(best5["perplexity"])
    assert kept_layers(f"search:{out / 'search.json'}", 6, 4) == result["kept"]["4"]


def test_contributions_are_the_library_scores_and_feed_the_contribution_strategy(lm_data, lm_checkpoint, tmp_path):
    proc = fairseq("fairseq-layerdrop", "contributions", lm_checkpoint, lm_data, "--max-batches", "2",
                   "--out", "scores.json", cwd=tmp_path)
    scores = json.load(open(tmp_path / "scores.json"))["stacks"]["decoder"]["scores"]
    assert len(scores) == 6 and all(0 < s < 2 for s in scores)  # 1 - cos lies in [0, 2]; trained layers move

    from fairseq_layerdrop.pruning.contribution import layer_contributions
    from fairseq_layerdrop.pruning.validation import load_checkpoint, validation_batches

    model, task = load_checkpoint(str(lm_checkpoint), str(lm_data))
    batches = validation_batches(model, task, "valid", 4096, 2)
    assert scores == pytest.approx(layer_contributions(model, batches, "decoder"), abs=1e-5)
    ranked = sorted(range(6), key=lambda i: -scores[i])
    for i in range(6):
        assert f"| {i} | {scores[i]:.4f} | {ranked.index(i) + 1} |" in proc.stdout
    assert kept_layers(f"contribution:{tmp_path / 'scores.json'}", 6, 3) == sorted(ranked[:3])


def test_average_takes_the_last_epoch_checkpoints_of_a_relative_directory(tmp_path):
    (tmp_path / "ckpts").mkdir()
    for epoch, value in ((1, 100.0), (2, 1.0), (3, 4.0)):
        torch.save({"model": {"w": torch.full((3,), value)}, "extra_state": {"epoch": epoch},
                    "last_optimizer_state": {"big": 1}}, tmp_path / "ckpts" / f"checkpoint{epoch}.pt")
    proc = fairseq("fairseq-layerdrop", "average", "--inputs", "ckpts", "--num-epoch-checkpoints", "2",
                   "--output", "avg.pt", cwd=tmp_path)
    assert "averaged 2 checkpoints (checkpoint2.pt, checkpoint3.pt)" in proc.stdout
    state = torch.load(tmp_path / "avg.pt", weights_only=True)
    assert torch.equal(state["model"]["w"], torch.full((3,), 2.5))
    assert state["extra_state"] == {"epoch": 3} and state["last_optimizer_state"] is None


def test_report_merges_sweeps_and_checks_the_mt_targets(tmp_path):
    for name, points in (("ld", {6: 20.0, 3: 18.0}), ("base", {6: 22.0, 3: 5.0})):
        with open(tmp_path / f"{name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["depth", "strategy", "kept", "parameters", "quality", "seconds"])
            writer.writeheader()
            for depth, quality in points.items():
                writer.writerow({"depth": depth, "strategy": "every-other", "kept": "encoder:0",
                                 "parameters": 10 * depth, "quality": quality, "seconds": 1})
    proc = fairseq("fairseq-layerdrop", "report", "--out", "merged", "--metric", "BLEU", "LD=ld.csv", "base=base.csv",
                   "--check-mt", "LD", "base", "--full", "6", "--half", "3", cwd=tmp_path)
    # importing fairseq sets the root logger to DEBUG; matplotlib's and PIL's debug lines (about 150) stay out
    assert [line for line in proc.stderr.splitlines() if line.startswith("DEBUG")] == [], proc.stderr[-2000:]
    md = (tmp_path / "merged" / "results.md").read_text()
    assert "| 6 | 20.00 | 22.00 |" in md and "| 3 | 18.00 | 5.00 |" in md
    assert "| LayerDrop pruned 6->3: share of its full BLEU | 0.900 | >= 0.90 | yes |" in md
    assert "| baseline pruned 6->3: share of its full BLEU | 0.227 | < 0.900 (far less) | yes |" in md
    assert (tmp_path / "merged" / "results.png").stat().st_size > 10000
