"""Training throughput of LayerDrop: ours against fairseq's own, measured in one run.

A 12-layer transformer LM of width 256 (FFN 1024, 4 heads) on generated Zipfian text with a
vocabulary of about 10k, trained by ``fairseq-train`` on the CPU. For each configuration we read
fairseq's own words/s (``wps``) from its ``train_inner`` log lines, skipping the first interval
(warm-up), and interleave the configurations over ``--rounds`` so that machine drift hits all alike.

The share of a training step spent in the layer stack bounds what LayerDrop can save:
ideal speed-up at rate p = 1 / (1 - p * share). We measure the share in process by timing
forward + backward + Adam step with the full stack and with the stack removed.

    python -m scripts.bench.train                          # about 12 minutes on 2 cores
    python -m scripts.bench.train --updates 20 --rounds 1  # a quick look

LayerDrop's speed depends on its random draws: at p = 0.5 the layers run per update vary by
about +-1.7 of 12, so runs must be long to compare rates fairly. The table shows ours' realized
mean (fairseq's built-in does not log it).
"""

import argparse
import statistics
import tempfile
import time

from scripts.bench.common import build_model, make_data, publish_report, train_args, words_per_second

CONFIGS = [  # (label, arch, rate, uses the plugin)
    ("fairseq transformer_lm", "transformer_lm", 0.0, False),
    ("fairseq built-in p=0.2", "transformer_lm", 0.2, False),
    ("fairseq built-in p=0.5", "transformer_lm", 0.5, False),
    ("ours p=0", "transformer_lm_layerdrop", 0.0, True),
    ("ours p=0.2", "transformer_lm_layerdrop", 0.2, True),
    ("ours p=0.5", "transformer_lm_layerdrop", 0.5, True),
]


def layer_stack_share(data, args, repeats=5):
    """Fraction of a training step (forward, backward, Adam step) spent in the 12 layers."""
    import torch
    from torch import nn

    model, task = build_model(data, *train_args(args), "--arch", "transformer_lm_layerdrop", "--decoder-layerdrop", "0")
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = args.max_tokens // args.tokens_per_sample
    tokens = torch.randint(4, len(task.dictionary), (batch, args.tokens_per_sample))

    def step_seconds():
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            logits, _ = model(tokens)
            torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), tokens.view(-1)).backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:])

    full = step_seconds()
    layers = model.decoder.layers
    model.decoder.layers = nn.ModuleList([])
    without = step_seconds()
    model.decoder.layers = layers
    return (full - without) / full


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=60, help="updates per run (default 60)")
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions with seeds 1..R; the mean is reported")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--tokens-per-sample", type=int, default=512)
    parser.add_argument("--out", default="bench_out", help="directory for bench_train.md")
    args = parser.parse_args()
    if args.updates < 2 * args.log_interval:
        parser.error("--updates must be at least twice --log-interval (the first interval is warm-up)")

    with tempfile.TemporaryDirectory() as tmp:
        print("generating and binarizing data ...", flush=True)
        data = make_data(tmp)
        print("measuring the layer stack's share of a training step ...", flush=True)
        share = layer_stack_share(data, args)
        print(f"  share = {share:.3f}", flush=True)
        results = {label: [] for label, *_ in CONFIGS}
        layers_ran = {label: [] for label, *_ in CONFIGS}
        for r in range(args.rounds):  # each round has its own seed, so its own LayerDrop draws
            for label, arch, rate, plugin in CONFIGS:
                wps, ran = words_per_second(data, arch, rate, plugin, args, seed=r + 1)
                results[label].append(wps)
                layers_ran[label].append(12.0 if rate == 0 else ran)
                print(f"  round {r + 1}/{args.rounds}  {label:<24} {wps:9.0f} words/s", flush=True)

    wps = {label: statistics.mean(v) for label, v in results.items()}
    ran = {label: (None if None in v else statistics.mean(v)) for label, v in layers_ran.items()}
    base, ours0 = wps["fairseq transformer_lm"], wps["ours p=0"]
    rows = ["| configuration | words/s | layers run per update | vs fairseq p=0 | vs own p=0 | ideal speed-up | of ideal |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for label, arch, rate, plugin in CONFIGS:
        ideal = 1 / (1 - rate * share)
        own0 = ours0 if plugin else base
        shown = "not logged" if ran[label] is None else f"{ran[label]:.2f}"
        rows.append(f"| {label} | {wps[label]:.0f} | {shown} | {wps[label] / base:.3f} | {wps[label] / own0:.3f} "
                    f"| {ideal:.3f} | {wps[label] / own0 / ideal:.3f} |")
    checks = [
        ("ours p=0 / fairseq transformer_lm", ours0 / base, 0.98),
        ("ours p=0.5 / ours p=0", wps["ours p=0.5"] / ours0, 1.5),
        ("ours p=0.5 speed-up / ideal", wps["ours p=0.5"] / ours0 / (1 / (1 - 0.5 * share)), 0.9),
        ("ours p=0.2 / fairseq built-in p=0.2", wps["ours p=0.2"] / wps["fairseq built-in p=0.2"], 0.98),
        ("ours p=0.5 / fairseq built-in p=0.5", wps["ours p=0.5"] / wps["fairseq built-in p=0.5"], 0.98),
    ]
    lines = [f"layer stack share of a training step: {share:.3f}; {args.rounds} rounds x {args.updates} updates "
             f"of {args.max_tokens} tokens (first {args.log_interval} of each run are warm-up)", "", *rows, "",
             "| target | measured | wanted | met |", "|---|---:|---:|---|"]
    lines += [f"| {name} | {value:.3f} | >= {want} | {'yes' if value >= want else 'NO'} |" for name, value, want in checks]
    publish_report(lines, args.out, "bench_train.md")


if __name__ == "__main__":
    main()
