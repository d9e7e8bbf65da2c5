import matplotlib.image
import pytest

from tests.testing import load_example


@pytest.mark.slow
def test_text_classification_quick_run_learns_and_plots(tmp_path):
    results = load_example("text_classification").main(
        ["--quick", "--out", str(tmp_path)]
    )
    assert results["accuracy"] > 0.6  # chance is 0.5
    assert 0.0 <= results["attention_on_deciding_words"] <= 1.0
    image = matplotlib.image.imread(tmp_path / "pooling_attention.png")
    assert image.shape[0] > 400 and image.shape[1] > 500
    assert (tmp_path / "text_classifier.keras").exists()
