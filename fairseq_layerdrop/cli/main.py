"""``fairseq-layerdrop SUBCOMMAND [ARGS]``: dispatch to one module of ``fairseq_layerdrop.cli`` per subcommand.

Each subcommand module has ``main(argv, prog)``; only the chosen one is imported.
"""

import importlib
import sys

SUBCOMMANDS = {
    "prune": "export a pruned checkpoint that plain fairseq loads (also: fairseq-layerdrop-prune)",
    "sweep": "evaluate a checkpoint at every depth with each pruning strategy: table and plot",
    "search": "choose the kept layers of a stack by validation perplexity",
    "contributions": "score each layer's contribution, 1 - cos(input, output), for --prune-strategy contribution",
    "gates": "print the learned keep probability of each layer of a --layer-gates checkpoint",
    "average": "average the parameters of several (or the last N epoch) checkpoints",
    "report": "merge the depth sweeps of several models into one table and plot, checking the targets",
    "dir": "print the directory to pass as fairseq's --user-dir (also: fairseq-layerdrop-dir)",
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: fairseq-layerdrop SUBCOMMAND [ARGS]   (fairseq-layerdrop SUBCOMMAND --help for its options)",
             "", "Depth on demand for fairseq transformers (LayerDrop, Fan et al. 2019, arXiv 1909.11556).", "",
             "subcommands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from fairseq_layerdrop import __version__

        print(f"fairseq-layerdrop {__version__}")
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        sys.exit(f"fairseq-layerdrop: unknown subcommand {name!r}; choose one of {', '.join(SUBCOMMANDS)} "
                 f"(fairseq-layerdrop --help)")
    module = importlib.import_module(f"fairseq_layerdrop.cli.{name}")
    return module.main(argv[1:], prog=f"fairseq-layerdrop {name}")


if __name__ == "__main__":
    sys.exit(main())
