from . import depth_distillation_loss, early_exit_loss, layer_gate_loss, lr_drop_loss  # noqa: F401
