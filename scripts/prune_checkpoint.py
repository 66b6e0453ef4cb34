"""Export a pruned checkpoint (also installed as the console command ``fairseq-layerdrop-prune``).

    python scripts/prune_checkpoint.py IN.pt OUT.pt --decoder-layers-to-keep 0,2,4
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq_layerdrop.pruning.export import main  # noqa: E402

if __name__ == "__main__":
    main()
