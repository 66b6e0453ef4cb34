"""``python -m fairseq_layerdrop.cli SUBCOMMAND ...``: the same as ``fairseq-layerdrop SUBCOMMAND ...``."""

import sys

from fairseq_layerdrop.cli.main import main

sys.exit(main())
