"""fairseq-layerdrop: depth on demand for fairseq transformers (Fan et al., arXiv 1909.11556).

Pass this directory to fairseq as ``--user-dir``; importing it registers the plugin's
architectures. This file only imports: registration happens by import.
"""

from . import compat  # noqa: F401  (must come first: it adapts checkpoint loading)
from . import criterions  # noqa: F401
from . import models  # noqa: F401
from . import tasks  # noqa: F401

__version__ = "0.1.0"
