import matplotlib.image
import pytest

from tests.testing import load_example


@pytest.mark.slow
def test_text_classification_quick_run_learns_and_plots(tmp_path):
    results = load_example("text_classification").main(
        ["--quick", "--out", str(tmp_path)]
    )
    assert results["accuracy"] > 0.6  # chance is 0.5; measured 0.65
    # Three quick epochs learn which words are positive (95% right without
    # a "not"), not yet the negation (33%), nor where to pool: 20% of the
    # pooling on the deciding words, uniform pooling gives 19%.
    assert results["accuracy_without_not"] > 0.85
    image = matplotlib.image.imread(tmp_path / "pooling_attention.png")
    assert image.shape[0] > 400 and image.shape[1] > 500
    assert (tmp_path / "text_classifier.keras").exists()
    page = (tmp_path / "attention.html").read_text(encoding="utf-8")
    assert "encoder/block_0/self_attention" in page and "pooling" in page
