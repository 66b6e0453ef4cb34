"""The two-pass criteria's cost (LR-Drop, depth distillation): step time and activation memory against plain
cross-entropy, measured in one interleaved run.

The 12-layer LM of the other benchmarks (width 256, FFN 1024, 4 heads, generated Zipfian text, vocabulary
about 10k; ``scripts/bench/common.py``), built in this process as fairseq-train builds it. One step =
forward + backward + Adam step on the same batches. Configurations (criterion, LayerDrop rate):

    plain cross_entropy, LR-Drop output term only (R-Drop's), LR-Drop with all three terms; p = 0 and 0.5;
    depth distillation (the full model and one sub-network per update) with the menu 1..11 (every-other) at
    p = 0, and with the LayerDrop draw at p = 0.5

interleaved over ``--rounds`` so that machine drift hits all alike (the table: the median of every timed
step); every configuration sees the same update numbers, so at p = 0.5 plain training and LR-Drop's first
pass drop the same layers. Peak memory: the tensors autograd saves for backward in one step (activation
memory, counted by distinct storage), the mean over the timed update numbers; ``--memory-only`` skips the
timing.

    python -m scripts.bench.lrdrop                      # CPU
    python -m scripts.bench.lrdrop --steps 4 --rounds 1  # a quick look
    python -m scripts.bench.lrdrop --device cuda         # on a GPU
    python -m scripts.bench.lrdrop --configs "plain p=0,distill menu p=0"   # only these configurations
"""

import argparse
import statistics
import tempfile
import time

import torch

from scripts.bench.common import MODEL, build_model, make_data

MENU = ",".join(str(d) for d in range(1, 12))  # every depth below the model's 12 layers
CONFIGS = [  # label, criterion (None: plain cross_entropy; LR-Drop weights; depth distillation settings), LayerDrop rate
    ("plain p=0", None, 0.0),
    ("output p=0", (1.0, 0.0, 0.0), 0.0),
    ("all terms p=0", (1.0, 1.0, 1.0), 0.0),
    ("distill menu p=0", {"depth_menu": MENU}, 0.0),
    ("plain p=0.5", None, 0.5),
    ("output p=0.5", (1.0, 0.0, 0.0), 0.5),
    ("all terms p=0.5", (1.0, 1.0, 1.0), 0.5),
    ("distill draw p=0.5", {}, 0.5),
]


class Setup:
    """One configuration's model, criterion, optimizer and batches."""

    def __init__(self, data, weights, rate, args):
        from fairseq.criterions.cross_entropy import CrossEntropyCriterion
        from fairseq_layerdrop.criterions.depth_distillation_loss import DepthDistillationCrossEntropyCriterion
        from fairseq_layerdrop.criterions.lr_drop_loss import LRDropCrossEntropyCriterion

        torch.manual_seed(1)
        self.model, task = build_model(
            data, "--task", "language_modeling", "--tokens-per-sample", str(args.tokens_per_sample),
            "--max-tokens", str(args.max_tokens), "--arch", "transformer_lm_layerdrop", *MODEL,
            "--decoder-layerdrop", str(rate), "--dropout", "0.1", "--seed", "1")
        self.model.to(args.device).train()
        if weights is None:
            self.criterion = CrossEntropyCriterion(task, False)
        elif isinstance(weights, dict):
            self.criterion = DepthDistillationCrossEntropyCriterion(task, False, **weights)
        else:
            self.criterion = LRDropCrossEntropyCriterion(task, False, *weights)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        task.load_dataset("train")
        itr = task.get_batch_iterator(task.dataset("train"), max_tokens=args.max_tokens, seed=1)
        batches = itr.next_epoch_itr(shuffle=False)
        from fairseq import utils
        self.batches = [utils.move_to_cuda(b) if args.device == "cuda" else b
                        for b, _ in zip(batches, range(args.steps))]
        self.device = args.device

    def step(self, update, sample):
        self.model.decoder.layers.set_num_updates(update)
        self.optimizer.zero_grad()
        loss, _, _ = self.criterion(self.model, sample)
        loss.backward()
        self.optimizer.step()

    def timed_steps(self, first_update):
        if self.device == "cuda":
            torch.cuda.synchronize()
        seconds = []
        for i, sample in enumerate(self.batches):
            start = time.perf_counter()
            self.step(first_update + i, sample)
            if self.device == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        return seconds


def saved_activation_mib(setup, update):
    """MiB of the tensors autograd saves for backward in one step (distinct storages): the activation memory,
    the part of the peak that the criterion changes (parameters, gradients and Adam state are alike)."""
    seen, total = set(), [0]

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total[0] += key[1]
        return t

    setup.model.decoder.layers.set_num_updates(update)
    setup.optimizer.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _, _ = setup.criterion(setup.model, setup.batches[0])
    loss.backward()
    return total[0] / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the first counts as warm-up "
                                                              "when there are more than one)")
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--tokens-per-sample", type=int, default=256)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (0: torch's default)")
    parser.add_argument("--data", help="a binarized LM corpus (default: generated Zipfian text)")
    parser.add_argument("--memory-only", action="store_true", help="only the activation memory (no timing)")
    parser.add_argument("--configs", help="comma-separated labels of the configurations to run (default: all; the "
                                          "plain one of each rate is always added)")
    args = parser.parse_args()
    configs = CONFIGS
    if args.configs:
        wanted = {label.strip() for label in args.configs.split(",")}
        unknown = wanted - {label for label, _, _ in CONFIGS}
        if unknown:
            parser.error(f"--configs: no configuration {', '.join(sorted(unknown))}; "
                         f"configurations: {', '.join(label for label, _, _ in CONFIGS)}")
        rates = {rate for label, _, rate in CONFIGS if label in wanted}
        configs = [c for c in CONFIGS if c[0] in wanted or (c[1] is None and c[2] in rates)]
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or make_data(tmp)
        print(f"building {len(configs)} configurations ({args.device}, {torch.get_num_threads()} threads)", flush=True)
        setups = [Setup(data, weights, rate, args) for _, weights, rate in configs]
        times = {label: [] for label, _, _ in configs}
        for r in range(0 if args.memory_only else args.rounds):
            for (label, _, _), setup in zip(configs, setups):
                seconds = setup.timed_steps(first_update=r * args.steps)
                if args.rounds == 1 or r > 0:
                    times[label].extend(seconds)
                print(f"round {r + 1}/{args.rounds} {label}: {statistics.mean(seconds) * 1000:.0f} ms/step (mean), "
                      f"{statistics.median(seconds) * 1000:.0f} (median)", flush=True)
        memory = {}
        for (label, _, _), setup in zip(configs, setups):
            memory[label] = statistics.mean(saved_activation_mib(setup, u) for u in range(args.steps))
            print(f"memory {label}: {memory[label]:.1f} MiB saved for backward", flush=True)
    if args.memory_only:
        times = {label: [1.0] for label in times}
    print("\n| configuration | ms/step (median of the timed steps) | x plain, same p | activation memory (MiB) "
          "| x plain, same p |")
    print("|---|---:|---:|---:|---:|")
    for label, _, rate in configs:
        plain = f"plain p={rate:g}"
        t, t0 = statistics.median(times[label]), statistics.median(times[plain])
        mib, mib0 = memory[label], memory[plain]
        print(f"| {label} | {t * 1000:.0f} | {t / t0:.2f} | {mib:.0f} | {mib / mib0:.2f} |")


if __name__ == "__main__":
    main()
