"""Print the directory to pass as fairseq's ``--user-dir`` (works from any working directory).

    fairseq-train DATA --user-dir "$(fairseq-layerdrop-dir)" --arch transformer_layerdrop ...
"""

import os


def user_dir() -> str:
    """Absolute path of the installed ``fairseq_layerdrop`` package."""
    return os.path.dirname(os.path.abspath(__file__))


def main():
    print(user_dir())


if __name__ == "__main__":
    main()
