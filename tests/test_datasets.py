"""Tests of the generated human-date → ISO data set."""

import datetime

import numpy as np
import pytest

from keras_attention.datasets import dates

pytestmark = pytest.mark.backend_neutral  # see conftest.py


def test_generate_is_seeded():
    assert dates.generate(50, seed=3) == dates.generate(50, seed=3)
    assert dates.generate(50, seed=3) != dates.generate(50, seed=4)


def test_written_forms_of_one_date():
    forms = dates._formats(datetime.date(2023, 7, 4))
    for expected in [
        "Tuesday, 4 July 2023",
        "07/04/23",
        "4 Jul 2023",
        "4th of July 2023",
        "July 4, 2023",
        "04.07.2023",
        "2023-07-04",
    ]:
        assert expected in forms
    assert "3rd of March 1997" in dates._formats(datetime.date(1997, 3, 3))
    assert "the 11th of May, 2001" in dates._formats(datetime.date(2001, 5, 11))
    assert len(set(forms)) == dates.NUM_FORMATS


def test_pairs_are_valid_iso_dates_in_range():
    for text, iso in dates.generate(300, seed=0):
        date = datetime.date.fromisoformat(iso)
        assert 1950 <= date.year <= 2049
        assert text.lower() in [f.lower() for f in dates._formats(date)]


def test_encode_decode_round_trip_and_reserved_ids():
    texts = ["4 Jul 2023", "07/04/23"]
    ids = dates.encode(texts, dates.SOURCE_VOCABULARY, 12, add_end=True)
    assert ids.shape == (2, 12) and ids.dtype == np.int32
    assert ids[0, 10] == dates.END_ID and ids[0, 11] == dates.PAD_ID
    assert dates.decode(ids, dates.SOURCE_VOCABULARY) == texts
    assert dates.encode(["4 Jul é"], dates.SOURCE_VOCABULARY, 8)[0, 6] == 3
    assert dates.SOURCE_VOCABULARY[:4] == dates.RESERVED
    assert dates.TARGET_VOCABULARY[:4] == dates.RESERVED


def test_load_data_shapes_and_held_out_split():
    train, test = dates.load_data(500, 100, seed=1)
    assert train["source"].shape[0] == 500 and test["source"].shape[0] == 100
    assert train["source"].shape[1] == test["source"].shape[1]
    assert train["target_in"].shape == (500, 11)
    np.testing.assert_array_equal(train["target_in"][:, 0], dates.START_ID)
    np.testing.assert_array_equal(train["target_out"][:, -1], dates.END_ID)
    np.testing.assert_array_equal(
        train["target_in"][:, 1:], train["target_out"][:, :-1]
    )
    assert not set(test["text"]) & set(train["text"])
    decoded = dates.decode(test["target_out"], dates.TARGET_VOCABULARY)
    assert decoded == test["iso"]
