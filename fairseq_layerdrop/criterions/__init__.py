from . import layer_gate_loss  # noqa: F401
from . import lr_drop_loss  # noqa: F401
