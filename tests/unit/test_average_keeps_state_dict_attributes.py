"""`fairseq-layerdrop average` (in process, through the dispatcher) on real model state dicts: the plugin LM's
own ``state_dict()``, which carries torch's ``_metadata`` (the version of each submodule, read by
``load_state_dict``) and the plugin's ``load_with_user_dir`` mark (compat.py, 2: plain fairseq then names
--user-dir). The average keeps both, and its values are the mean computed here."""

import torch

from fairseq_layerdrop.cli import main as dispatcher
from fairseq_layerdrop.compat import LoadWithUserDirMark
from tests.helpers import build_model, run_main

LM = ["--task", "language_modeling", "--arch", "transformer_lm_layerdrop_tiny", "--tokens-per-sample", "64"]


def test_the_average_of_plugin_state_dicts_keeps_their_attributes_and_the_user_dir_mark(lm_data, tmp_path):
    model, _ = build_model(lm_data, *LM)
    saved = []
    for epoch in (1, 2, 3):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.normal_(mean=epoch, std=1.0)
        state_dict = model.state_dict()
        assert isinstance(getattr(state_dict, "load_with_user_dir", None), LoadWithUserDirMark)  # the premise
        torch.save({"model": state_dict, "cfg": {"epoch": epoch}, "extra_state": {"epoch": epoch},
                    "last_optimizer_state": {"state": "big"}}, tmp_path / f"checkpoint{epoch}.pt")
        saved.append({k: v.clone() for k, v in state_dict.items()})
    metadata = dict(state_dict._metadata)

    proc = run_main(dispatcher.main, "average", "--inputs", tmp_path, "--num-epoch-checkpoints", "2",
                    "--output", tmp_path / "avg.pt")
    assert "averaged 2 checkpoints (checkpoint2.pt, checkpoint3.pt)" in proc.stdout
    state = torch.load(tmp_path / "avg.pt", map_location="cpu", weights_only=True)
    averaged = state["model"]

    assert isinstance(getattr(averaged, "load_with_user_dir", None), LoadWithUserDirMark)
    assert dict(averaged._metadata) == metadata and metadata[""] == {"version": 1}
    assert list(averaged) == list(saved[-1])  # the same keys, in the model's order
    for key, last in saved[-1].items():
        mean = (saved[1][key].double() + last.double()) / 2  # epochs 2 and 3
        assert averaged[key].dtype == last.dtype
        assert torch.allclose(averaged[key].double(), mean, rtol=0, atol=1e-6), key
    assert state["cfg"] == {"epoch": 3} and state["last_optimizer_state"] is None

    fresh, _ = build_model(lm_data, *LM)
    fresh.load_state_dict(averaged)  # strict: every key, with the metadata the modules read
    assert torch.equal(fresh.state_dict()["decoder.layers.0.fc1.weight"], averaged["decoder.layers.0.fc1.weight"])
