import os

import keras
import matplotlib.image
import numpy as np
import pytest

from keras_attention.datasets import dates
from tests.testing import load_example


@pytest.mark.slow
def test_date_normalization_quick_run_writes_its_outputs(tmp_path):
    results = load_example("date_normalization").main(
        ["--quick", "--out", str(tmp_path)]
    )
    # Two quick epochs decode no date exactly yet (exact match 0.0), but
    # training works: the loss fell 1.79 -> 1.31 and the last epoch had 59%
    # of the target characters right (teacher-forced).
    history = results["history"]
    assert history["loss"][-1] < 0.85 * history["loss"][0]
    assert history["accuracy"][-1] > 0.5
    image = matplotlib.image.imread(tmp_path / "attention.png")
    assert image.shape[0] > 300 and image.shape[1] > 300
    page = (tmp_path / "attention.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "attention-data" in page
    model = keras.models.load_model(tmp_path / "date_normalization.keras")
    source = dates.encode(["4 Jul 2023"], dates.SOURCE_VOCABULARY, 29)
    assert tuple(model.generate(source, 11).shape) == (1, 11)
    assert os.path.exists(tmp_path / "generate" / "saved_model.pb")


class NeverEnds:
    """A model stub whose prediction fills every step with "2", no end."""

    def generate(self, source, max_length, return_attention=False):
        tokens = np.full((1, max_length), dates.TARGET_VOCABULARY.index("2"))
        attention = np.full((1, max_length, source.shape[1]), 0.1)
        return tokens, attention


def test_heatmap_of_a_prediction_without_end_token(tmp_path):
    _, test = dates.load_data(1, 1, seed=0)
    example = load_example("date_normalization")
    path = example.save_heatmap(NeverEnds(), test, 0, tmp_path / "a.png")
    assert matplotlib.image.imread(path).shape[0] > 300
