import math

import pytest

from tests.testing import load_example

pytestmark = (
    pytest.mark.tensorflow_only
)  # tensorflow-text and SavedModel export

translate = load_example("translate")


@pytest.mark.slow
def test_translate_quick_run_exports_and_reloads(tmp_path):
    result = translate.main(
        ["--quick", "--out", str(tmp_path), "--export-litert"]
    )
    assert (tmp_path / "translate_heads.png").stat().st_size > 10_000
    page = (tmp_path / "attention.html").read_text(encoding="utf-8")
    assert "decoder/block_0/cross_attention" in page  # every layer
    assert (tmp_path / "translator" / "saved_model.pb").exists()
    # The whole greedy loop in one LiteRT file, checked by the example.
    assert result["litert_same_tokens"] == 1.0
    assert (tmp_path / "translate.tflite").stat().st_size > 10_000
    assert result["reload_output"].count("->") == 2
    assert_learns(result)


def assert_learns(result):
    """One quick epoch translates nothing yet (BLEU 0, exact match 0), but
    its loss must fall below ln(V), the loss of a uniform guess where
    training starts: measured 4.86 (Transformer), 4.63 (RNN) < ln 165."""
    uniform = math.log(result["target_vocabulary_size"])
    assert result["loss"][-1] < uniform - 0.1
