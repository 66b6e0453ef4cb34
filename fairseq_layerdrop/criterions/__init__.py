from . import layer_gate_loss  # noqa: F401
