import pytest

from tests.testing import load_example


@pytest.mark.slow
def test_quickstart_quick_run_learns_and_saves(tmp_path):
    main = load_example("quickstart").main
    accuracy = main(["--quick", "--out", str(tmp_path)])
    assert accuracy > 0.5  # chance is 0.25
    assert (tmp_path / "quickstart.keras").exists()
