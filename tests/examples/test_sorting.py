import matplotlib.image
import pytest

from tests.testing import load_example


@pytest.mark.slow
def test_sorting_quick_run_learns_and_plots(tmp_path):
    results = load_example("sorting").main(["--quick", "--out", str(tmp_path)])
    # A chance guess of a 4-digit sorted sequence is ~1e-4; quick training
    # already gets the short ones right often (measured: 75% of 4 digits,
    # 2% of 10, 41% of all held-out sequences).
    by_length = results["by_length"]
    assert by_length[4] > 0.2
    assert by_length[4] > by_length[10] + 0.3
    assert results["accuracy"] > 0.2
    for name in ["sorting_attention.png", "sorting_heads.png"]:
        image = matplotlib.image.imread(tmp_path / name)
        assert image.shape[0] > 300 and image.shape[1] > 400
    assert (tmp_path / "sorting.keras").exists()
