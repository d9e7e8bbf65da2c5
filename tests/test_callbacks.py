import keras
import numpy as np
import pytest

from keras_attention.callbacks import TimeLimit


def fit(limit, epochs):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model.fit(
        np.ones((4, 2)), np.ones((4, 1)), epochs=epochs, callbacks=[limit],
        verbose=0,
    )  # fmt: skip


def test_time_limit_stops_on_a_whole_epoch_and_none_never_stops():
    limit = TimeLimit(seconds=0.0)
    assert len(fit(limit, 5).history["loss"]) == 1
    unlimited = TimeLimit(seconds=None)
    assert len(fit(unlimited, 3).history["loss"]) == 3
    assert len(unlimited.epoch_seconds) == 3
    assert all(s >= 0 for s in unlimited.epoch_seconds)


@pytest.mark.parametrize("seconds", [-1, float("nan"), "5", True])
def test_time_limit_rejects_bad_seconds(seconds):
    with pytest.raises(ValueError, match="`seconds`"):
        TimeLimit(seconds)
