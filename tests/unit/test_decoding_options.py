"""The checks of --early-exit, --self-speculative and --draft-tokens (decoding/options.py) without a model."""

from argparse import Namespace

import pytest

from fairseq_layerdrop.decoding.options import DecodingOptionError, check_decoding_options, check_exit_depth


def options(**kwargs):
    return Namespace(**{"early_exit": None, "self_speculative": None, "draft_tokens": None, **kwargs})


def test_valid_options_are_returned_as_numbers():
    assert check_decoding_options(options()) == (None, None, None)
    assert check_decoding_options(options(early_exit=3)) == (3, None, None)
    assert check_decoding_options(options(self_speculative="2", draft_tokens=4)) == (None, 2, 4)


@pytest.mark.parametrize("given, flag", [
    (dict(early_exit=0), "--early-exit must be at least 1"),
    (dict(self_speculative=-1, draft_tokens=2), "--self-speculative must be at least 1"),
    (dict(self_speculative=2, draft_tokens=0), "--draft-tokens must be at least 1"),
    (dict(self_speculative="two", draft_tokens=2), "--self-speculative must be a whole number"),
    (dict(self_speculative=2), "--self-speculative E needs --draft-tokens"),
    (dict(draft_tokens=4), "--draft-tokens K needs --self-speculative"),
    (dict(early_exit=2, self_speculative=2, draft_tokens=2), "--early-exit and --self-speculative exclude"),
])
def test_bad_options_name_their_flag(given, flag):
    with pytest.raises(DecodingOptionError, match=flag):
        check_decoding_options(options(**given))


def test_exit_depth_bounds():
    check_exit_depth(6, "--early-exit", 6, allow_full=True)  # early exit at the top is the full model
    check_exit_depth(5, "--self-speculative", 6, allow_full=False)
    with pytest.raises(DecodingOptionError, match=r"--self-speculative 6: the decoder has 6 layers, so choose 1 to 5"):
        check_exit_depth(6, "--self-speculative", 6, allow_full=False)
    with pytest.raises(DecodingOptionError, match=r"--early-exit 7: the decoder has 6 layers, so choose 1 to 6"):
        check_exit_depth(7, "--early-exit", 6, allow_full=True)
    with pytest.raises(DecodingOptionError, match="at least 2"):
        check_exit_depth(1, "--self-speculative", 1, allow_full=False)
