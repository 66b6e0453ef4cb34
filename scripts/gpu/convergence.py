"""Validation curves of a mini recipe's models, compared at equal updates and at equal training time.

LayerDrop's updates are cheaper than the baseline's (a skipped layer costs nothing: Fan et al., arXiv
1909.11556), so quality per GPU-hour is what a user pays for. From fairseq-train's simple-format log of each
model (``OUT/NAME/train.log``: the end-of-epoch ``train`` line with ``num_updates`` and ``train_wall``, the
``valid`` line with ``ppl``), this writes every epoch's point and two comparisons: the validation perplexity
of each model at the largest update count all models reached, and at the largest training time all reached
(each model's last validation at or before it).

    python -m scripts.gpu.convergence RUN_DIR layerdrop baseline scratch4 gated --out RUN_DIR/convergence

Writes OUT.csv and OUT.md, and prints the Markdown.
"""

import argparse
import csv
import os
import re

LINE = re.compile(r"\| (train|valid) \| epoch (\d+) \| (.*)$")


def fields(rest):
    """``loss 6.1 | ppl 70.2 | num_updates 110`` -> {"loss": 6.1, "ppl": 70.2, "num_updates": 110.0}"""
    out = {}
    for part in rest.split(" | "):
        key, _, value = part.strip().partition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def curve(log_path):
    """One row per validated epoch: epoch, updates, training seconds so far, validation perplexity.

    fairseq logs an epoch's validation before its training summary; a rerun appends, so later lines win."""
    train, valid = {}, {}
    with open(log_path, errors="replace") as f:
        for line in f:
            match = LINE.search(line)
            if not match:
                continue
            kind, epoch, rest = match.group(1), int(match.group(2)), match.group(3)
            if kind == "train":
                train[epoch] = fields(rest)
            elif "valid on 'valid' subset" in rest:
                valid[epoch] = fields(rest.split("subset", 1)[1])
    return [{"epoch": e, "updates": int(train[e].get("num_updates", 0)), "train_seconds": train[e].get("train_wall", 0.0),
             "valid_ppl": valid[e].get("ppl")} for e in sorted(train) if e in valid]


def at_or_before(rows, key, limit):
    """The last row whose ``key`` is at most ``limit`` (None if none)."""
    before = [r for r in rows if r[key] <= limit]
    return before[-1] if before else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="the recipe's OUT folder")
    parser.add_argument("models", nargs="+", help="model folders under RUN_DIR (each with train.log)")
    parser.add_argument("--out", required=True, help="path prefix of the .csv and .md written")
    args = parser.parse_args(argv)
    curves = {}
    for name in args.models:
        path = os.path.join(args.run_dir, name, "train.log")
        if not os.path.exists(path):
            parser.error(f"no {path}: is {args.run_dir} a mini recipe's OUT, and {name} one of its models?")
        curves[name] = curve(path)
        if not curves[name]:
            parser.error(f"{path} has no validated epoch: did the training run finish one (--log-format simple)?")
    with open(args.out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["model", "epoch", "updates", "train_seconds", "valid_ppl"])
        writer.writeheader()
        for name, rows in curves.items():
            writer.writerows({"model": name, **row} for row in rows)
    updates = min(rows[-1]["updates"] for rows in curves.values())
    seconds = min(rows[-1]["train_seconds"] for rows in curves.values())
    lines = [f"Validation perplexity at equal updates ({updates}) and at equal training time ({seconds:.0f} s of "
             "fairseq's train_wall), and each model's best", "",
             "| model | epochs | updates | train s | best valid ppl | at equal updates | at equal time (updates) |",
             "|---|---|---|---|---|---|---|"]
    for name, rows in curves.items():
        same_updates = at_or_before(rows, "updates", updates)
        same_time = at_or_before(rows, "train_seconds", seconds)
        best = min(r["valid_ppl"] for r in rows)
        time_cell = f"{same_time['valid_ppl']:.2f} ({same_time['updates']})" if same_time else "-"
        lines.append(f"| {name} | {rows[-1]['epoch']} | {rows[-1]['updates']} | {rows[-1]['train_seconds']:.0f} | "
                     f"{best:.2f} | {same_updates['valid_ppl']:.2f} | {time_cell} |")
    report = "\n".join(lines)
    with open(args.out + ".md", "w") as f:
        f.write(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
