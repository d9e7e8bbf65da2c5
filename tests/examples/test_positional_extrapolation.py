import matplotlib.image
import pytest

from tests.testing import load_example


@pytest.mark.slow
def test_positional_extrapolation_quick_run_plots_five_curves(tmp_path):
    results = load_example("positional_extrapolation").main(
        ["--quick", "--out", str(tmp_path)]
    )
    curves = results["accuracy"]
    assert list(curves) == ["sinusoidal", "learned", "rotary", "alibi", "t5"]
    for curve in curves.values():
        assert list(curve) == list(range(4, 13))  # trained up to 8
        assert all(0.0 <= a <= 1.0 for a in curve.values())
    image = matplotlib.image.imread(tmp_path / "positional_extrapolation.png")
    assert image.shape[0] > 300 and image.shape[1] > 500
