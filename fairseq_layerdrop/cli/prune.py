"""``fairseq-layerdrop prune IN.pt OUT.pt ...``: export a pruned checkpoint (also installed as
``fairseq-layerdrop-prune``). The export itself is ``fairseq_layerdrop/pruning/export.py``.

    fairseq-layerdrop prune IN.pt OUT.pt --decoder-layers-to-keep 0,2,4
    fairseq-layerdrop prune IN.pt OUT.pt --prune-to 4 --prune-strategy every-other
    fairseq-layerdrop prune IN.pt OUT.pt --prune-to 4 --as-fairseq       # fairseq's own architecture, no --user-dir
    fairseq-layerdrop prune IN.pt OUT.pt --prune-to 4 --for-ctranslate2  # for ct2-fairseq-converter (docs/serve.md)
"""

from fairseq_layerdrop.pruning import export


def main(argv=None, prog="fairseq-layerdrop-prune"):
    parser = export.build_parser()
    parser.prog = prog
    parser.parse_args(argv)  # --help and usage errors under the name it was called by
    export.main(argv)


if __name__ == "__main__":
    main()
