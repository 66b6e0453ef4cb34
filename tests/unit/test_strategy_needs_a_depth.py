"""``--prune-strategy`` without a depth to choose the layers of is refused, naming both flags (it would be ignored);
and a refusal of a hub call names the keywords (``prune_to``) instead of the commands' flags."""

import argparse

import pytest

from fairseq_layerdrop.compat import hub_keywords
from fairseq_layerdrop.pruning.options import as_keywords, check_strategy_has_a_depth, pruning_requests
from fairseq_layerdrop.pruning.state_dict import PruningError


def options(**given):
    fields = dict(encoder_layers_to_keep=None, decoder_layers_to_keep=None, layers_to_keep=None, prune_to=None,
                  encoder_prune_to=None, decoder_prune_to=None, prune_strategy=None)
    return argparse.Namespace(**{**fields, **given})


@pytest.mark.parametrize("given, remedy", [
    (dict(prune_strategy="top"), "add --prune-to R to keep R layers chosen by top, or drop --prune-strategy"),
    (dict(prune_strategy="top", decoder_layers_to_keep="0,2"), "--decoder-layers-to-keep lists the kept layers; "
                                                               "drop --prune-strategy"),
    (dict(prune_strategy="every-other", layers_to_keep="1", encoder_layers_to_keep="0"),
     "--layers-to-keep and --encoder-layers-to-keep list the kept layers; drop --prune-strategy"),
])
def test_a_strategy_without_a_depth_is_refused_naming_both_flags(given, remedy):
    with pytest.raises(PruningError) as refused:
        check_strategy_has_a_depth(options(**given))
    assert str(refused.value) == (f"--prune-strategy {given['prune_strategy']} is given without --prune-to, "
                                  f"--encoder-prune-to or --decoder-prune-to, so it would be ignored: {remedy}")


def test_a_strategy_with_a_depth_or_no_strategy_passes():
    for given in (dict(), dict(layers_to_keep="0"), dict(prune_strategy="top", prune_to=2),
                  dict(prune_strategy="top", decoder_prune_to=2, encoder_layers_to_keep="0")):
        check_strategy_has_a_depth(options(**given))


def test_outside_the_hub_refusals_name_the_flags_and_inside_they_name_the_keywords(monkeypatch):
    model = argparse.Namespace(decoder_layers=6)
    assert hub_keywords() is None
    request = pruning_requests(options(prune_to=9), model, ("decoder",))["decoder"]
    with pytest.raises(PruningError, match=r"^--prune-to: cannot prune the decoder to 9 layers"):
        request.check_depth(6)
    monkeypatch.setattr("fairseq_layerdrop.pruning.options.hub_keywords", lambda: {"prune_to": 9})
    request = pruning_requests(options(prune_to=9, prune_strategy="middle"), model, ("decoder",))["decoder"]
    with pytest.raises(PruningError, match=r"^prune_strategy: unknown pruning strategy 'middle'"):
        request.check_depth(6)
    assert as_keywords("--decoder-layers-to-keep 0,1 and --prune-to 2 (--decoder-layers 2)") == \
        "decoder_layers_to_keep 0,1 and prune_to 2 (--decoder-layers 2)"
