from . import early_exit_loss, layer_gate_loss  # noqa: F401
