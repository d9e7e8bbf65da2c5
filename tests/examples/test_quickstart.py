import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quickstart_quick_run_learns_and_saves(tmp_path):
    accuracy = load_example("quickstart").main(
        ["--quick", "--out", str(tmp_path)]
    )
    assert accuracy > 0.5  # chance is 0.25
    assert (tmp_path / "quickstart.keras").exists()
