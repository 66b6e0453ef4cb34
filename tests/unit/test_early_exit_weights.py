"""LayerSkip's early-exit weights and curricula (criterions/early_exit_weights.py) against hand-computed values."""

import pytest

from fairseq_layerdrop.criterions.early_exit_weights import (
    check_early_exit_options,
    exit_enabled,
    exit_scale,
    exit_weights,
)


def test_weights_grow_with_depth_and_are_normalized():
    # L = 4: e = [1, 3, 6] * e_scale for the exits, 10 for the final layer
    assert exit_weights(4, [0, 1, 2], 1.0) == pytest.approx([1 / 20, 3 / 20, 6 / 20, 10 / 20])
    assert exit_weights(4, [0, 1, 2], 0.5) == pytest.approx([0.5 / 15, 1.5 / 15, 3 / 15, 10 / 15])
    # L = 6, exits after layers 1 and 3 only: e = [3, 10] and 21 for the final layer
    assert exit_weights(6, [1, 3], 1.0) == pytest.approx([3 / 34, 10 / 34, 21 / 34])
    assert [exit_scale(layer, 6, 2.0) for layer in range(6)] == [2.0, 6.0, 12.0, 20.0, 30.0, 21.0]


def test_scale_zero_and_no_exit_leave_the_final_layer_alone():
    assert exit_weights(4, [0, 1, 2], 0.0) == [0.0, 0.0, 0.0, 1.0]
    assert exit_weights(4, [], 1.0) == [1.0]


def test_rotational_curriculum_turns_every_exit_on_once_per_interval():
    on = lambda update: [l for l in range(6) if exit_enabled(l, 6, update, "rotational", rotation_interval=3)]  # noqa: E731
    assert on(0) == [0, 3, 5]  # (l - 0) mod 3 == 0, and the final layer always
    assert on(1) == [1, 4, 5]
    assert on(2) == [2, 5]
    assert on(3) == on(0) and on(301) == on(1)


def test_gradual_curriculum_switches_exits_on_from_the_top_down():
    # L = 5, T = 8: exit l is on from update T (L - 1 - l) / (L - 1) = 2 (3 - l): l=3 at 2, l=2 at 4, l=1 at 6, l=0 at 8
    on = lambda update: [l for l in range(5) if exit_enabled(l, 5, update, "gradual", gradual_updates=8)]  # noqa: E731
    assert on(0) == on(1) == [4]
    assert on(2) == on(3) == [3, 4]
    assert on(4) == [2, 3, 4]
    assert on(6) == [1, 2, 3, 4]
    assert on(7) == [1, 2, 3, 4] and on(8) == on(10 ** 6) == [0, 1, 2, 3, 4]


def test_options_resolve_defaults():
    assert check_early_exit_options(1.0, "none") == (1, 0)
    assert check_early_exit_options(0.5, "rotational") == (2, 0)
    assert check_early_exit_options(0.5, "rotational", 4) == (4, 0)
    assert check_early_exit_options(0.5, "gradual", None, 100) == (1, 100)
    assert check_early_exit_options(1e6, "none") == (1, 0)  # the largest scale accepted


@pytest.mark.parametrize("args, message", [
    ((-0.1, "none"), r"--early-exit-scale must be a number, 0 or more"),
    ((float("nan"), "none"), r"--early-exit-scale must be a number"),
    ((1e308, "none"), r"--early-exit-scale must be at most 1e\+06, got 1e\+308"),
    ((1e6 * 1.5, "none"), r"--early-exit-scale must be at most 1e\+06"),
    ((1.0, "cyclic"), r"--early-exit-curriculum must be one of none, rotational, gradual"),
    ((1.0, "rotational", 0), r"--early-exit-rotation-interval must be a whole number, 1 or more"),
    ((1.0, "none", 2), r"--early-exit-rotation-interval only applies to --early-exit-curriculum rotational"),
    ((1.0, "gradual"), r"--early-exit-curriculum gradual needs --early-exit-gradual-updates"),
    ((1.0, "gradual", None, 0), r"--early-exit-gradual-updates must be a whole number of updates, 1 or more"),
    ((1.0, "rotational", None, 5), r"--early-exit-gradual-updates only applies to --early-exit-curriculum gradual"),
])
def test_bad_options_name_the_flag(args, message):
    with pytest.raises(ValueError, match=message):
        check_early_exit_options(*args)
