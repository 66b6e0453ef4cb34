"""Pruning options that arrive as loader overrides (the hub's ``from_pretrained`` keyword arguments,
``--model-overrides``): depths given as text are read, and an option that no model read is refused."""

import argparse

import pytest

from fairseq_layerdrop.compat import check_pruning_overrides_read
from fairseq_layerdrop.pruning.options import pruning_requests
from fairseq_layerdrop.pruning.state_dict import PruningError


def options(**given):
    fields = dict(encoder_layers_to_keep=None, decoder_layers_to_keep=None, layers_to_keep=None, prune_to=None,
                  encoder_prune_to=None, decoder_prune_to=None, prune_strategy="every-other")
    return argparse.Namespace(**{**fields, **given})


def test_a_depth_given_as_text_is_read_as_a_number_and_a_bad_one_is_refused_naming_the_stack():
    model = argparse.Namespace(encoder_layers=6, decoder_layers=6)
    requests = pruning_requests(options(prune_to="3", decoder_prune_to=None), model, ("encoder", "decoder"))
    assert requests["encoder"].depth == 3 and requests["encoder"].kept(6) == [0, 2, 4]
    requests = pruning_requests(options(decoder_prune_to=" 2 "), model, ("encoder", "decoder"))
    assert requests["decoder"].kept(6) == [0, 3]
    bad = pruning_requests(options(prune_to="3x"), model, ("decoder",))
    with pytest.raises(PruningError, match="cannot prune the decoder to '3x' layers: it has 6, so choose 1 to 6"):
        bad["decoder"].kept(6)


class Model:
    def __init__(self, pruned):
        if pruned:
            self.pruning_requested = {"decoder": "--prune-to"}


def config(task, arch):
    return argparse.Namespace(task=argparse.Namespace(_name=task), model=argparse.Namespace(arch=arch))


def test_a_pruning_override_that_no_model_read_is_refused_with_the_commands_that_work():
    with pytest.raises(PruningError) as refused:
        check_pruning_overrides_read({"data": "bin", "prune_to": 3}, [Model(False)], config("language_modeling", "transformer_lm"))
    message = str(refused.value)
    assert "prune_to=3 was passed to the loader but no model read it" in message
    assert "task (language_modeling) and architecture (transformer_lm)" in message
    assert "task={'_name': 'language_modeling_layerdrop', 'prune_to': 3}" in message
    assert "--task language_modeling_layerdrop --prune-to" in message and "fairseq-layerdrop prune" in message
    # one unpruned member of an ensemble is enough to refuse
    with pytest.raises(PruningError, match="layers_to_keep='0,1'.*translation_layerdrop"):
        check_pruning_overrides_read({"layers_to_keep": "0,1"}, [Model(True), Model(False)], config("translation", "transformer"))


def test_overrides_that_were_read_or_that_fairseq_reads_itself_pass():
    cfg = config("translation", "transformer")
    check_pruning_overrides_read({"prune_to": 3}, [Model(True)], cfg)
    check_pruning_overrides_read({"prune_to": None, "data": "bin"}, [Model(False)], cfg)
    check_pruning_overrides_read({"decoder_layers_to_keep": "0,2"}, [Model(False)], cfg)  # fairseq's own option
    check_pruning_overrides_read(None, [Model(False)], cfg)
