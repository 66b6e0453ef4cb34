"""``fairseq-layerdrop dir``: print the directory to pass as fairseq's ``--user-dir`` (works from any working
directory; also installed as ``fairseq-layerdrop-dir``).

    fairseq-train DATA --user-dir "$(fairseq-layerdrop dir)" --arch transformer_layerdrop ...
"""

import argparse
import os


def user_dir() -> str:
    """Absolute path of the installed ``fairseq_layerdrop`` package."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None, prog="fairseq-layerdrop-dir"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    print(user_dir())


if __name__ == "__main__":
    main()
