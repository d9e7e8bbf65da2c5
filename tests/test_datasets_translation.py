import pytest

from keras_attention.datasets import load_tsv_pairs
from keras_attention.datasets import toy_translation

pytestmark = pytest.mark.backend_neutral  # see conftest.py


def test_toy_translation_is_seeded_and_distinct():
    a = toy_translation(2000, seed=4)
    b = toy_translation(2000, seed=4)
    assert a == b
    assert len(set(a[0])) == 2000
    assert toy_translation(50, seed=5) != toy_translation(50, seed=4)


def test_toy_translation_has_tens_of_thousands_of_pairs():
    english, spanish = toy_translation(30000, seed=0)
    assert len(set(english)) == 30000 and len(spanish) == 30000


def test_toy_translation_reorders_and_agrees():
    pairs = dict(zip(*toy_translation(20000, seed=0)))
    for english, spanish in [
        ("this cat is very large", "este gato es muy grande"),
        ("the red house is old", "la casa roja es vieja"),
        ("these red houses are old", "estas casas rojas son viejas"),
    ]:
        if english in pairs:
            assert pairs[english] == spanish
    # Adjectives follow the noun, with agreement, in every generated pair.
    checked = 0
    for english, spanish in pairs.items():
        for en, es in [
            ("the red house ", "la casa roja "),
            ("an old car ", "un coche viejo "),
            ("these white cats ", "estos gatos blancos "),
        ]:
            if english.startswith(en):
                assert spanish.startswith(es)
                checked += 1
    assert checked >= 10


def test_load_tsv_pairs_reads_anki_format(tmp_path):
    path = tmp_path / "spa.txt"
    path.write_text(
        "Go.\tVe.\tCC-BY 2.0 (France) Attribution: tatoeba.org\n\nHi.\tHola.\n",
        encoding="utf-8",
    )
    assert load_tsv_pairs(path) == (["Go.", "Hi."], ["Ve.", "Hola."])


def test_load_tsv_pairs_names_line_of_malformed_input(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("a\tb\nno tab here\nc\t\nd\te\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:2"):
        load_tsv_pairs(path)
    with pytest.warns(UserWarning, match="skipped 2 malformed"):
        sources, targets = load_tsv_pairs(path, skip_malformed=True)
    assert sources == ["a", "d"] and targets == ["b", "e"]
