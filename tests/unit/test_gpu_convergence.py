"""scripts.gpu.convergence: learning curves from fairseq's simple logs, compared at equal updates and time."""

from scripts.gpu import convergence

LOG = """\
2026-12-01 11:01:51 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 9.6 | ppl 800.5 | wps 562 | num_updates 100
2026-12-01 11:01:51 | INFO | train | epoch 001 | dec_layers_ran 4.08 | loss 11.0 | ppl 2137.4 | num_updates 100 | train_wall 10 | wall 41
2026-12-01 11:02:51 | INFO | valid | epoch 002 | valid on 'valid' subset | loss 8.6 | ppl {second} | wps 562 | num_updates 200
2026-12-01 11:02:51 | INFO | train | epoch 002 | loss 10.0 | ppl 1024 | num_updates 200 | train_wall {wall} | wall 80
"""


def write(tmp_path, name, second, wall):
    (tmp_path / name).mkdir()
    (tmp_path / name / "train.log").write_text(LOG.format(second=second, wall=wall))


def test_curves_pair_each_validation_with_its_epoch_and_compare_at_equal_updates_and_time(tmp_path):
    write(tmp_path, "fast", 300.25, 15)  # LayerDrop: cheaper updates
    write(tmp_path, "slow", 250.5, 30)
    assert convergence.curve(tmp_path / "fast" / "train.log") == [
        {"epoch": 1, "updates": 100, "train_seconds": 10.0, "valid_ppl": 800.5},
        {"epoch": 2, "updates": 200, "train_seconds": 15.0, "valid_ppl": 300.25}]
    convergence.main([str(tmp_path), "fast", "slow", "--out", str(tmp_path / "conv")])
    table = (tmp_path / "conv.md").read_text()
    assert "at equal updates (200) and at equal training time (15 s" in table
    assert "| fast | 2 | 200 | 15 | 300.25 | 300.25 | 300.25 (200) |" in table
    assert "| slow | 2 | 200 | 30 | 250.50 | 250.50 | 800.50 (100) |" in table  # at 15 s the slow one had 1 epoch
    assert len((tmp_path / "conv.csv").read_text().splitlines()) == 5
