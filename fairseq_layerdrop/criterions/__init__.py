from . import early_exit_loss, layer_gate_loss, lr_drop_loss  # noqa: F401
