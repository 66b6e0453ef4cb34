from .layer_drop import SeededLayerDropList, attach_layerdrop, check_layerdrop_rate, layer_keep_mask  # noqa: F401
