import matplotlib

matplotlib.use("Agg")

import matplotlib.figure  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_attention import visualization  # noqa: E402

pytestmark = pytest.mark.backend_neutral  # see conftest.py

SOURCE = ["he", "hit", "me", "with", "a", "pie"]
TARGET = ["il", "a", "m'", "entarté"]


def alignment():
    weights = np.full((4, 6), 0.02)
    for row, col in [(0, 0), (1, 1), (2, 2), (3, 5)]:
        weights[row, col] = 1.0
    return weights / weights.sum(-1, keepdims=True)


def test_plot_attention_labels_axes_with_tokens(tmp_path):
    fig = visualization.plot_attention(alignment(), SOURCE, TARGET)
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == SOURCE
    assert [t.get_text() for t in ax.get_yticklabels()] == TARGET
    assert ax.get_xlabel() and ax.get_ylabel()
    assert len(fig.axes) == 2  # heatmap and colorbar
    fig.savefig(tmp_path / "alignment.png")
    assert (tmp_path / "alignment.png").stat().st_size > 1000


def test_plot_attention_rejects_wrong_rank_and_labels():
    with pytest.raises(ValueError, match=r"weights.shape=\(1, 4, 6\)"):
        visualization.plot_attention(alignment()[None])
    with pytest.raises(ValueError, match="source_tokens"):
        visualization.plot_attention(alignment(), SOURCE[:3], TARGET)


@pytest.mark.parametrize(
    "heads,ncols,expected_axes", [(3, 4, 4), (6, 4, 7), (8, 4, 9)]
)
def test_plot_heads_has_one_panel_per_head(heads, ncols, expected_axes):
    weights = np.random.default_rng(0).random((heads, 5, 5))
    fig = visualization.plot_heads(weights, list("abcde"), ncols=ncols)
    assert len(fig.axes) == expected_axes  # panels + colorbar
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"head {h}" for h in range(heads)]


def test_plot_positional_encoding_axes():
    fig = visualization.plot_positional_encoding(np.zeros((16, 8)))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "embedding dimension"
    assert ax.get_ylabel() == "position"
    assert ax.images[0].get_array().shape == (16, 8)
