"""Tests of the sorting and copy/reverse sequence tasks."""

import numpy as np
import pytest

from keras_attention.datasets import copy_reverse
from keras_attention.datasets import sorting
from keras_attention.datasets.sequences import to_symbols

pytestmark = pytest.mark.backend_neutral  # see conftest.py


def test_sorting_targets_are_the_sorted_sources():
    data = sorting(50, min_length=2, max_length=7, seed=3)
    for source, target, length in zip(
        data["source"], data["target_out"], data["length"]
    ):
        np.testing.assert_array_equal(target[:length], np.sort(source[:length]))
        assert target[length] == 2 and (target[length + 1 :] == 0).all()
        assert (source[:length] >= 4).all() and (source[length:] == 0).all()


def test_target_in_is_target_out_shifted_right_after_start():
    data = copy_reverse(20, seed=1)
    assert (data["target_in"][:, 0] == 1).all()
    for target_in, target_out, length in zip(
        data["target_in"], data["target_out"], data["length"]
    ):
        np.testing.assert_array_equal(
            target_in[1 : length + 1], target_out[:length]
        )


@pytest.mark.parametrize("reverse", [True, False])
def test_copy_reverse_reverses_or_copies(reverse):
    data = copy_reverse(30, min_length=1, max_length=9, reverse=reverse)
    for source, target, length in zip(
        data["source"], data["target_out"], data["length"]
    ):
        expected = source[:length][::-1] if reverse else source[:length]
        np.testing.assert_array_equal(target[:length], expected)


def test_sequences_are_seeded_and_cover_the_lengths():
    a, b = sorting(200, 3, 6, seed=5), sorting(200, 3, 6, seed=5)
    np.testing.assert_array_equal(a["source"], b["source"])
    assert set(a["length"]) == {3, 4, 5, 6}
    assert not np.array_equal(a["source"], sorting(200, 3, 6, seed=6)["source"])


def test_source_length_pads_wider():
    data = copy_reverse(4, max_length=5, source_length=8, num_symbols=3)
    assert data["source"].shape == (4, 8) and data["target_out"].shape == (4, 9)
    assert data["source"].max() <= 6


def test_to_symbols_stops_at_end():
    assert to_symbols([[5, 6, 2, 7], [4, 0, 9, 9]]) == ["12", "0"]


def test_bad_lengths_raise():
    with pytest.raises(ValueError, match="min_length"):
        sorting(3, min_length=5, max_length=4)
