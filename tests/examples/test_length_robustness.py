import matplotlib.image
import pytest

from tests.testing import load_example


@pytest.mark.slow
def test_length_robustness_quick_run_plots_three_curves(tmp_path):
    results = load_example("length_robustness").main(
        ["--quick", "--out", str(tmp_path)]
    )
    curves = results["accuracy"]
    assert list(curves) == [
        "RNN, no attention",
        "RNN + Bahdanau attention",
        "Transformer",
    ]
    for curve in curves.values():
        assert list(curve) == list(range(2, 13))  # trained up to 8, tested 12
        assert all(0.0 <= a <= 1.0 for a in curve.values())
    # Even a two-epoch attention model reverses the shortest sequences.
    assert curves["RNN + Bahdanau attention"][2] > 0.5
    image = matplotlib.image.imread(tmp_path / "length_robustness.png")
    assert image.shape[0] > 300 and image.shape[1] > 500
