"""`fairseq-layerdrop report` (in process, through the dispatcher): the targets read each model's every-other
point even where another strategy comes first at that depth, and results.csv, results.md and the plot hold
exactly the sweeps' values. Expected numbers are worked out here from the fixture."""

import csv

import pytest

from fairseq_layerdrop.cli import main as dispatcher
from tests.helpers import run_main

FIELDS = ["depth", "strategy", "kept", "parameters", "quality", "seconds", "metric"]
# (depth, strategy, quality), in file order: every-other is never first at a depth. At full depth (4 of 4 layers)
# every strategy keeps the same layers, so it scores the same.
SWEEPS = {
    "LD": [(4, "top", 110.0), (4, "bottom", 110.0), (4, "every-other", 110.0),
           (2, "top", 400.0), (2, "bottom", 380.0), (2, "every-other", 150.0)],
    "base": [(4, "bottom", 100.0), (4, "every-other", 100.0),
             (2, "bottom", 800.0), (2, "every-other", 350.0), (2, "top", 900.0)],
    "small": [(2, "top", 140.0), (2, "every-other", 140.0)],
}


def write(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for depth, strategy, quality in rows:
            writer.writerow({"depth": depth, "strategy": strategy, "kept": f"decoder:{strategy}{depth}",
                             "parameters": 1000 * depth, "quality": quality, "seconds": 1, "metric": "perplexity"})
    return path


def test_targets_csv_and_plot_hold_the_every_other_values_whatever_comes_first(tmp_path, monkeypatch):
    import matplotlib.axes

    plotted = []
    original_plot = matplotlib.axes.Axes.plot

    def recording_plot(self, xs, ys, *args, **kwargs):
        plotted.append((kwargs.get("label"), list(xs), list(ys)))
        return original_plot(self, xs, ys, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    inputs = [f"{label}={write(tmp_path / f'{label}.csv', rows)}" for label, rows in SWEEPS.items()]
    proc = run_main(dispatcher.main, "report", "--out", tmp_path / "out", "--metric", "perplexity", *inputs,
                    "--check-lm", "LD", "base", "small", "--full", "4", "--half", "2")
    assert proc.returncode == 0, proc.stderr

    every_other = {label: {d: q for d, s, q in rows if s == "every-other"} for label, rows in SWEEPS.items()}
    ld, base, small = every_other["LD"], every_other["base"], every_other["small"]
    expected_targets = [
        ("LayerDrop pruned 4->2 / its full depth (ppl)", ld[2] / ld[4], "<= 1.15", ld[2] / ld[4] <= 1.15),
        ("baseline pruned 4->2 / its full depth (ppl)", base[2] / base[4], ">= 3", base[2] / base[4] >= 3),
        ("LayerDrop pruned to 2 / 2 layers from scratch (ppl)", ld[2] / small[2], "<= 1", ld[2] <= small[2]),
        ("LayerDrop / baseline at full depth (ppl)", ld[4] / base[4], "<= 1.05", ld[4] / base[4] <= 1.05),
    ]
    assert [round(m, 3) for _, m, _, _ in expected_targets] == [1.364, 3.5, 1.071, 1.1]  # 150/110, 350/100, ...
    md = (tmp_path / "out" / "results.md").read_text()
    for name, measured, wanted, met in expected_targets:
        assert f"| {name} | {measured:.3f} | {wanted} | {'yes' if met else 'no'} |" in md

    with open(tmp_path / "out" / "results.csv", newline="") as f:
        merged = [(r["model"], int(r["depth"]), r["strategy"], r["kept"], int(r["parameters"]), float(r["quality"]))
                  for r in csv.DictReader(f)]
    assert merged == [(label, d, s, f"decoder:{s}{d}", 1000 * d, q) for label, rows in SWEEPS.items()
                      for d, s, q in rows]
    # the wide table: a column per (model, strategy) in order of appearance, a row per depth
    columns = list(dict.fromkeys((label, s) for label, rows in SWEEPS.items() for _, s, _ in rows))
    assert f"| depth | {' | '.join(f'{m}, {s}' for m, s in columns)} |" in md
    for depth in (4, 2):
        values = {(label, s): q for label, rows in SWEEPS.items() for d, s, q in rows if d == depth}
        cells = [f"{values[c]:.2f}" if c in values else "" for c in columns]
        assert f"| {depth} | {' | '.join(cells)} |" in md

    # one line per (model, strategy), through that strategy's points by depth; a one-depth sweep is a marked point
    expected_lines = {}
    for label, rows in SWEEPS.items():
        if len({d for d, _, _ in rows}) == 1:
            expected_lines[label] = [(rows[0][0], rows[0][2])]
            continue
        for strategy in dict.fromkeys(s for _, s, _ in rows):
            expected_lines[f"{label}, {strategy}"] = sorted((d, q) for d, s, q in rows if s == strategy)
    drawn = {label: list(zip(xs, ys)) for label, xs, ys in plotted}
    assert drawn == expected_lines
    assert len(plotted) == len(expected_lines)  # one panel: the perplexities span less than 10x


def test_a_missing_every_other_point_is_refused_even_when_another_strategy_has_it(tmp_path):
    ld = write(tmp_path / "ld.csv", [(4, "every-other", 110.0), (2, "top", 400.0)])
    proc = run_main(dispatcher.main, "report", "--out", tmp_path / "out", "--metric", "perplexity", f"LD={ld}",
                    f"base={ld}", f"small={ld}", "--check-lm", "LD", "base", "small", "--full", "4", "--half", "2",
                    check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "fairseq-layerdrop report: 'LD' has no every-other result at depth 2"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("metric", ["BLEU", "ROUGE-L"])
def test_mt_targets_name_the_metric_and_read_every_other(tmp_path, metric):
    rows = [(6, "top", 20.0), (6, "every-other", 20.0), (3, "top", 2.0), (3, "every-other", 18.0)]
    base_rows = [(6, "every-other", 22.0), (3, "top", 21.0), (3, "every-other", 5.0)]
    for path, sweep in (("ld.csv", rows), ("base.csv", base_rows)):
        with open(tmp_path / path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows({"depth": d, "strategy": s, "kept": "x", "parameters": 1, "quality": q, "seconds": 1,
                              "metric": metric} for d, s, q in sweep)
    proc = run_main(dispatcher.main, "report", "--out", tmp_path / "out", "--metric", metric,
                    f"LD={tmp_path / 'ld.csv'}", f"base={tmp_path / 'base.csv'}", "--check-mt", "LD", "base",
                    "--full", "6", "--half", "3")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / "results.md").read_text()
    ld_share, base_share = 18.0 / 20.0, 5.0 / 22.0
    assert f"| LayerDrop pruned 6->3: share of its full {metric} | {ld_share:.3f} | >= 0.90 | yes |" in md
    assert (f"| baseline pruned 6->3: share of its full {metric} | {base_share:.3f} | < {ld_share:.3f} (far less) "
            "| yes |") in md


def test_distill_targets_read_the_every_other_points_and_the_worst_depth(tmp_path):
    from fairseq_layerdrop.cli.report import distill_targets

    def rows(points, strategy="every-other"):
        return [{"depth": d, "strategy": strategy, "kept": "", "parameters": 0, "quality": q} for d, q in points]

    models = {
        # a "top" row listed first at depth 4 must not be read as the every-other point
        "distill": rows([(4, 999.0)], "top") + rows([(8, 102.0), (4, 107.0), (2, 150.0)]),
        "baseline": rows([(8, 100.0), (4, 140.0)]),
        "scratch": rows([(4, 103.0)]),
        "layerdrop": rows([(8, 120.0), (4, 121.0), (2, 149.0)]),
    }
    checks = distill_targets(models, "distill", "baseline", "scratch", "layerdrop", 8, 4)
    measured = [c[1] for c in checks]
    assert measured == pytest.approx([102 / 100, 107 / 103, 107 / 102, 150 / 149])
    assert [c[3] for c in checks] == [True, True, True, False]  # depth 2 is above LayerDrop's: the last one fails


def test_distill_targets_of_bleu_invert_the_ratios_so_that_above_one_is_worse():
    from fairseq_layerdrop.cli.report import distill_targets

    def rows(points):
        return [{"depth": d, "strategy": "every-other", "kept": "", "parameters": 0, "quality": q} for d, q in points]

    models = {
        "distill": rows([(6, 20.0), (3, 18.5), (1, 4.0)]),
        "baseline": rows([(6, 20.2)]),
        "scratch": rows([(3, 19.0)]),
        "layerdrop": rows([(6, 15.0), (3, 14.0), (1, 5.0)]),
    }
    checks = distill_targets(models, "distill", "baseline", "scratch", "layerdrop", 6, 3, metric="BLEU")
    # by hand: baseline 20.2 / distill 20.0; scratch 19.0 / 18.5; own full 20.0 / 18.5; worst over depths 1, 3, 6
    # of LayerDrop / distill is depth 1's 5.0 / 4.0
    assert [c[1] for c in checks] == pytest.approx([20.2 / 20.0, 19.0 / 18.5, 20.0 / 18.5, 5.0 / 4.0])
    assert [c[3] for c in checks] == [True, True, True, False]
    assert "BLEU" in checks[0][0]


def test_twelve_models_get_twelve_colours_and_the_legend_stays_off_the_curves(tmp_path, monkeypatch):
    # the default colour cycle has 10 colours: an 11th and 12th model used to share the 1st's and 2nd's
    import matplotlib.axes

    colours, legends = {}, []
    original_plot, original_legend = matplotlib.axes.Axes.plot, matplotlib.axes.Axes.legend

    def recording_plot(self, xs, ys, *args, **kwargs):
        colours[kwargs.get("label")] = tuple(matplotlib.colors.to_rgba(kwargs["color"]))
        return original_plot(self, xs, ys, *args, **kwargs)

    def recording_legend(self, *args, **kwargs):
        legends.append(kwargs)
        return original_legend(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    monkeypatch.setattr(matplotlib.axes.Axes, "legend", recording_legend)
    labels = [f"model {n}" for n in range(12)]
    inputs = [f"{label}={write(tmp_path / f'{n}.csv', [(4, 'every-other', 100.0 + n), (2, 'every-other', 150.0 + n)])}"
              for n, label in enumerate(labels)]
    proc = run_main(dispatcher.main, "report", "--out", tmp_path / "out", "--metric", "perplexity", *inputs)
    assert proc.returncode == 0, proc.stderr
    assert sorted(colours) == sorted(f"{label}, every-other" for label in labels)
    assert len(set(colours.values())) == 12
    assert legends[-1].get("bbox_to_anchor", (0, 0))[0] > 1  # anchored right of the axes
