from .state_dict import PruningError, check_kept_layers, parse_layer_list, prune_state_dict, stack_depth  # noqa: F401
from .strategies import STRATEGIES, kept_layers, register_strategy  # noqa: F401
from . import contribution, learned, search  # noqa: F401,E402  (data-driven strategies register by import)
