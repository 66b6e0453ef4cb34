"""CNN/DailyMail ``.story`` files -> ``{train,val,test}.{source,target}``, the files fairseq's BART example reads.

The stories (Hermann et al. 2015; ``cnn_stories.tgz``, ``dailymail_stories.tgz``) are split by the URL
lists of See et al. 2017 (``all_train.txt``, ``all_val.txt``, ``all_test.txt``): a story's file name
is the SHA-1 of its URL. Each output line is one untokenized, cased document (the non-anonymized
version fairseq's ``examples/bart/README.summarization.md`` asks for): the article's paragraphs
(before the first ``@highlight``) joined by spaces, and the highlights joined by spaces as the
summary; a line without final punctuation gets a period.

    python -m scripts.data.cnn_dm_stories STORIES_DIR URL_LISTS_DIR OUT_DIR
"""

import argparse
import hashlib
import os
import sys

SPLITS = {"train": "all_train.txt", "val": "all_val.txt", "test": "all_test.txt"}
END_PUNCTUATION = (".", "!", "?", "'", '"', "\u2019", "\u201d", ")")


def with_period(line: str) -> str:
    return line if line.endswith(END_PUNCTUATION) else line + "."


def read_story(path: str):
    """(article, summary) of one ``.story`` file."""
    article, highlights, in_highlight = [], [], False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line == "@highlight":
                in_highlight = True
            elif in_highlight:
                highlights.append(with_period(line))
            else:
                article.append(with_period(line))
    return " ".join(article), " ".join(highlights)


def story_index(root: str):
    """SHA-1 hex -> path of every ``*.story`` file below ``root``."""
    index = {}
    for directory, _, files in os.walk(root, followlinks=True):
        for name in files:
            if name.endswith(".story"):
                index[name[: -len(".story")]] = os.path.join(directory, name)
    return index


def convert(stories_dir: str, lists_dir: str, out_dir: str):
    index = story_index(stories_dir)
    if not index:
        raise ValueError(f"no .story files below {stories_dir}")
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for split, list_name in SPLITS.items():
        list_path = os.path.join(lists_dir, list_name)
        if not os.path.isfile(list_path):
            raise ValueError(f"no URL list {list_path}")
        with open(list_path, encoding="utf-8") as f:
            urls = [line.strip() for line in f if line.strip()]
        missing = [u for u in urls if hashlib.sha1(u.encode()).hexdigest() not in index]
        if missing:
            raise ValueError(f"{len(missing)} of the {len(urls)} stories of {list_name} are missing "
                             f"(first: {missing[0]}); unpack both cnn_stories.tgz and dailymail_stories.tgz")
        with open(os.path.join(out_dir, f"{split}.source"), "w", encoding="utf-8") as src, \
                open(os.path.join(out_dir, f"{split}.target"), "w", encoding="utf-8") as tgt:
            for url in urls:
                article, summary = read_story(index[hashlib.sha1(url.encode()).hexdigest()])
                src.write(article + "\n")
                tgt.write(summary + "\n")
        counts[split] = len(urls)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stories_dir", help="directory holding cnn/stories and dailymail/stories (any depth)")
    parser.add_argument("lists_dir", help="directory holding all_train.txt, all_val.txt, all_test.txt")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    try:
        counts = convert(args.stories_dir, args.lists_dir, args.out_dir)
    except ValueError as error:
        sys.exit(f"cnn_dm_stories: {error}")
    print(", ".join(f"{split} {n} documents" for split, n in counts.items()), "in", args.out_dir)


if __name__ == "__main__":
    main()
