import pytest

from tests.testing import load_example

pytestmark = (
    pytest.mark.tensorflow_only
)  # tensorflow-text and SavedModel export

translate = load_example("translate")


@pytest.mark.slow
def test_translate_quick_run_exports_and_reloads(tmp_path):
    result = translate.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "translate_heads.png").stat().st_size > 10_000
    assert (tmp_path / "translator" / "saved_model.pb").exists()
    assert result["reload_output"].count("->") == 2
    assert 0.0 <= result["exact_match"] <= 1.0
    assert 0.0 <= result["bleu_beam"] <= 100.0
    assert 0.0 <= result["chrf_greedy"] <= 100.0


@pytest.mark.slow
def test_translate_quick_run_of_the_rnn(tmp_path):
    result = translate.main(["--quick", "--model", "seq2seq", "--out",
                             str(tmp_path)])  # fmt: skip
    assert (tmp_path / "translate_heads.png").stat().st_size > 10_000
    assert result["reload_output"].count("->") == 2
