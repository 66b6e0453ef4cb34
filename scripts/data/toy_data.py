"""Small generated corpora for the tests and the demo: learnable, deterministic, no downloads.

translation: the target is the source reversed, each word mapped through a fixed
    permutation (needs attention over the whole source, learnable by a tiny model).
language modeling: sentences from a seeded first-order Markov chain over a small vocabulary
    (each word has three possible successors), ending with a copy of their first two words,
    so that attention over the sentence helps and perplexity falls quickly.

    python -m scripts.data.toy_data translation OUT_DIR [--train 2000]
    python -m scripts.data.toy_data lm OUT_DIR [--train 3000]
"""

import argparse
import os
import random
from typing import List, Tuple

SPLITS = ("train", "valid", "test")


def translation_pairs(n: int, seed: int, vocab: int = 40, min_len: int = 3, max_len: int = 10) -> List[Tuple[str, str]]:
    mapping = list(range(vocab))
    random.Random(0).shuffle(mapping)  # the "language" is fixed; only the sentences vary with seed
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        src = [rng.randrange(vocab) for _ in range(rng.randint(min_len, max_len))]
        tgt = [mapping[w] for w in reversed(src)]
        pairs.append((" ".join(f"s{w}" for w in src), " ".join(f"t{w}" for w in tgt)))
    return pairs


def lm_sentences(n: int, seed: int, vocab: int = 60, min_len: int = 6, max_len: int = 20) -> List[str]:
    table_rng = random.Random(0)  # fixed transition table: the "language"
    successors = {a: table_rng.sample(range(vocab), 3) for a in range(vocab)}
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words = [rng.randrange(vocab), rng.randrange(vocab)]
        length = rng.randint(min_len, max_len)
        while len(words) < length:
            choices = successors[words[-1]]
            words.append(choices[0] if rng.random() < 0.7 else rng.choice(choices))
        words += ["|"] + words[:2]  # a long-range copy: the sentence ends by repeating its start
        sentences.append(" ".join(w if isinstance(w, str) else f"w{w}" for w in words))
    return sentences


def write_translation(out_dir: str, train: int = 2000, valid: int = 200, test: int = 200, src: str = "src", tgt: str = "tgt") -> str:
    os.makedirs(out_dir, exist_ok=True)
    for split, n, seed in zip(SPLITS, (train, valid, test), (1, 2, 3)):
        pairs = translation_pairs(n, seed)
        for lang, side in ((src, 0), (tgt, 1)):
            with open(os.path.join(out_dir, f"{split}.{lang}"), "w") as f:
                f.writelines(pair[side] + "\n" for pair in pairs)
    return out_dir


def write_lm(out_dir: str, train: int = 3000, valid: int = 300, test: int = 300) -> str:
    os.makedirs(out_dir, exist_ok=True)
    for split, n, seed in zip(SPLITS, (train, valid, test), (1, 2, 3)):
        with open(os.path.join(out_dir, f"{split}.txt"), "w") as f:
            f.writelines(s + "\n" for s in lm_sentences(n, seed))
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["translation", "lm"])
    parser.add_argument("out_dir")
    parser.add_argument("--train", type=int, default=None, help="number of training examples")
    args = parser.parse_args(argv)
    kwargs = {} if args.train is None else {"train": args.train}
    writer = write_translation if args.kind == "translation" else write_lm
    print(writer(args.out_dir, **kwargs))


if __name__ == "__main__":
    main()
