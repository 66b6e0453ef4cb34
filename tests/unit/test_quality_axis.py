"""The depth plots' y axis: perplexity on a log scale whose visible ticks carry numbers."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from fairseq_layerdrop.cli.sweep import quality_axis


def visible_tick_labels(ax):
    ax.figure.canvas.draw()
    low, high = ax.get_ylim()
    return [t.get_text() for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]


@pytest.mark.parametrize("values, expected", [
    ((165.0, 630.0), ["200", "300", "500"]),  # inside one decade: the PTB plot had no label at all
    ((20.0, 4000.0), ["20", "30", "50", "100", "200", "300", "500", "1,000", "2,000", "3,000", "5,000"]),
])
def test_perplexity_axis_labels_ticks_inside_the_data_range(values, expected):
    fig, ax = plt.subplots()
    ax.plot([1, 2], list(values))
    quality_axis(ax, "perplexity")
    assert ax.get_yscale() == "log"
    assert visible_tick_labels(ax) == expected
    plt.close(fig)


def test_bleu_axis_stays_linear():
    fig, ax = plt.subplots()
    ax.plot([1, 2], [10.0, 30.0])
    quality_axis(ax, "BLEU")
    assert ax.get_yscale() == "linear" and "higher is better" in ax.get_ylabel()
    plt.close(fig)
