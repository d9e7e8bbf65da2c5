import math

import pytest

from tests.testing import load_example

pytestmark = (
    pytest.mark.tensorflow_only
)  # tensorflow-text and SavedModel export

translate = load_example("translate")


def test_corpus_bleu_formula():
    assert translate.corpus_bleu(["a b c d e"], ["a b c d e"]) == 100.0
    assert translate.corpus_bleu(["x y z w"], ["a b c d"]) == 0.0
    # 1-4 gram precisions 5/6, 4/5, 3/4, 2/3 and no brevity penalty.
    score = translate.corpus_bleu(["a b c d e x"], ["a b c d e f"])
    expected = 100 * (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25
    assert score == pytest.approx(expected)
    # A correct hypothesis half as long is penalised by exp(1 - 8/4).
    score = translate.corpus_bleu(["a b c d"], ["a b c d e f g h"])
    expected = 100 * math.exp(1 - 8 / 4)
    assert score == pytest.approx(expected)


@pytest.mark.slow
def test_translate_quick_run_exports_and_reloads(tmp_path):
    result = translate.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "translate_heads.png").stat().st_size > 10_000
    assert (tmp_path / "translator" / "saved_model.pb").exists()
    assert result["reload_output"].count("->") == 2
    assert 0.0 <= result["exact_match"] <= 1.0
