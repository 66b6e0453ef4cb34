"""Training throughput of each LayerDrop structure and rate schedule, measured in one run.

The model, data and words/s reading of ``scripts/bench/train.py`` (a 12-layer LM of width 256 trained by
``fairseq-train --cpu``): at one rate p for every structure (Fan et al. Fig. 4: layer, sublayer,
attention, ffn, head, head+layer) and for every schedule (uniform, linear, linear-reverse), with
the ratio of words/s to our p = 0 run. Configurations are interleaved over ``--rounds``.

    python -m scripts.bench.structures                             # about 15 minutes on 2 cores
    python -m scripts.bench.structures --updates 20 --rounds 1     # a quick look
    python -m scripts.bench.structures --in-process                # steps interleaved across configurations

``--in-process`` builds every configuration's model in this process (as ``fairseq-train`` would) and
times training steps (forward, backward, Adam) round-robin across the configurations, one step
each in turn, with the update number driving the draws: load on a shared machine then hits every
configuration alike, which separate ``fairseq-train`` runs cannot promise. It reports tokens/s.

Head drop runs every block (the heads' value rows are scaled, nothing is skipped): it is not
expected to be faster than p = 0. A sub-layer structure skips blocks, not layers, so its speed-up
follows the blocks that did not run (shown: mean attention / FFN blocks run per update, of 12;
"-" where the structure does not drop blocks).
"""

import argparse
import statistics
import tempfile

from scripts.bench.common import build_model, make_data, publish_report, train_args, words_per_second

METERS = ("dec_layers_ran", "dec_attn_ran", "dec_ffn_ran")


def configs(p):
    """(label, rate, extra fairseq-train flags)."""
    rows = [("p=0", 0.0, [])]
    rows += [(f"{s} p={p}", p, ["--layerdrop-structure", s])
             for s in ("layer", "sublayer", "attention", "ffn", "head", "head+layer")]
    rows += [(f"layer, {s} schedule, top p={p}", p, ["--layerdrop-schedule", s]) for s in ("linear", "linear-reverse")]
    return rows


def interleaved_tokens_per_second(data, rows, args):
    """Per configuration: tokens/s (median step) and mean layers run, stepping the configurations in turn."""
    import time

    import torch

    torch.set_num_threads(args.threads)
    models = []
    for label, rate, extra in rows:
        torch.manual_seed(1)
        model, task = build_model(data, *train_args(args), "--arch", "transformer_lm_layerdrop",
                                  "--decoder-layerdrop", rate, *extra)
        models.append((model.train(), torch.optim.Adam(model.parameters(), lr=1e-4)))
    batch = args.max_tokens // args.tokens_per_sample
    tokens = torch.randint(4, len(task.dictionary), (batch, args.tokens_per_sample))
    seconds = {label: [] for label, *_ in rows}
    ran = {label: [] for label, *_ in rows}
    for update in range(args.updates):
        for (label, *_), (model, optimizer) in zip(rows, models):
            start = time.perf_counter()
            model.set_num_updates(update)
            optimizer.zero_grad(set_to_none=True)
            logits, _ = model(tokens)
            torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), tokens.view(-1)).backward()
            optimizer.step()
            seconds[label].append(time.perf_counter() - start)
            plans = model.decoder.layers.last_plans
            ran[label].append((sum(not p.skipped for p in plans), sum(p.attention for p in plans), sum(p.ffn for p in plans)))
        print(f"  step {update + 1}/{args.updates}", flush=True)
    skip = args.log_interval if args.updates > args.log_interval else 0  # warm-up
    return ({label: args.max_tokens / statistics.median(v[skip:]) for label, v in seconds.items()},
            {label: [statistics.mean(column) for column in zip(*v[skip:])] for label, v in ran.items()})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=0.5, help="the LayerDrop rate of every configuration (default 0.5)")
    parser.add_argument("--updates", type=int, default=40, help="updates per run (default 40)")
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions with seeds 1..R; the mean is reported")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--tokens-per-sample", type=int, default=512)
    parser.add_argument("--out", default="bench_out", help="directory for bench_structures.md")
    parser.add_argument("--in-process", action="store_true", help="time interleaved steps in this process (see above)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads with --in-process (default 1)")
    args = parser.parse_args()
    if args.updates < 2 * args.log_interval:
        parser.error("--updates must be at least twice --log-interval (the first interval is warm-up)")

    rows = configs(args.rate)
    wps = {label: [] for label, *_ in rows}
    meters = {label: [] for label, *_ in rows}
    with tempfile.TemporaryDirectory() as tmp:
        print("generating and binarizing data ...", flush=True)
        data = make_data(tmp)
        if args.in_process:
            return report_in_process(data, rows, args)
        for r in range(args.rounds):
            for i, (label, rate, extra) in enumerate(rows):
                speed, means = words_per_second(data, "transformer_lm_layerdrop", rate, True, args, r + 1, extra, METERS)
                wps[label].append(speed)
                meters[label].append(means)
                print(f"  round {r + 1}/{args.rounds} [{i + 1}/{len(rows)}] {label:<40} {speed:8.0f} words/s", flush=True)

    def mean_meter(label, name):
        values = [m[name] for m in meters[label] if m[name] is not None]
        return f"{statistics.mean(values):.2f}" if values else "-"

    base = statistics.mean(wps["p=0"])
    lines = [f"rate {args.rate}; {args.rounds} rounds x {args.updates} updates of {args.max_tokens} tokens "
             f"(first {args.log_interval} of each run are warm-up); 12-layer LM, width 256", "",
             "| configuration | words/s | vs p=0 | layers run | attention blocks run | FFN blocks run |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, *_ in rows:
        speed = statistics.mean(wps[label])
        lines.append(f"| {label} | {speed:.0f} | {speed / base:.3f} | {mean_meter(label, 'dec_layers_ran')} "
                     f"| {mean_meter(label, 'dec_attn_ran')} | {mean_meter(label, 'dec_ffn_ran')} |")
    publish_report(lines, args.out, "bench_structures.md")


def report_in_process(data, rows, args):
    speed, ran = interleaved_tokens_per_second(data, rows, args)
    base = speed["p=0"]
    lines = [f"rate {args.rate}; in process, {args.updates} interleaved steps per configuration of "
             f"{args.max_tokens} tokens (first {args.log_interval} are warm-up; median step; {args.threads} torch thread(s)); "
             "12-layer LM, width 256", "",
             "| configuration | tokens/s | vs p=0 | layers run (at least partly) | attention blocks run | FFN blocks run |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {label} | {speed[label]:.0f} | {speed[label] / base:.3f} | " + " | ".join(f"{n:.2f}" for n in ran[label]) + " |"
              for label, *_ in rows]
    publish_report(lines, args.out, "bench_structures_in_process.md")


if __name__ == "__main__":
    main()
