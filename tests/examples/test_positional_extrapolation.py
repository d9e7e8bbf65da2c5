import matplotlib.image
import numpy as np
import pytest

from tests.testing import load_example


@pytest.mark.slow
def test_positional_extrapolation_quick_run_plots_five_curves(tmp_path):
    results = load_example("positional_extrapolation").main(
        ["--quick", "--out", str(tmp_path)]
    )
    curves = results["accuracy"]
    assert list(curves) == ["sinusoidal", "learned", "rotary", "alibi", "t5"]
    # Chance is 1/15 (tokens 1-15); on the lengths trained on, two quick
    # epochs reach a mean of 0.40 (alibi) to 1.00 (learned).
    seen = {}
    for name, curve in curves.items():
        assert list(curve) == list(range(4, 13))  # trained up to 8
        seen[name] = np.mean([curve[n] for n in range(4, 9)])
    assert min(seen.values()) > 0.2
    assert max(seen.values()) > 0.9
    image = matplotlib.image.imread(tmp_path / "positional_extrapolation.png")
    assert image.shape[0] > 300 and image.shape[1] > 500
