import time

import keras
import numpy as np
import pytest

from keras_attention.callbacks import TimeLimit

pytestmark = pytest.mark.backend_neutral  # see conftest.py

PAUSE = 0.05  # seconds slept in each epoch's one batch: epochs of known length


def tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def fit(model, limit, epochs, pause=0.0):
    """`(losses, ends)` of a `fit` of one batch per epoch.

    `ends[i]`: seconds from the start of training to the end of epoch `i`,
    read by a callback after `limit`'s (so each epoch `limit` times lies
    between two ends).
    """
    ends = []
    clock = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: ends.append(time.perf_counter()),
        on_train_batch_end=lambda batch, logs: time.sleep(pause),
        on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()),
    )
    history = model.fit(
        np.ones((4, 2)), np.ones((4, 1)), epochs=epochs,
        callbacks=[limit, clock], verbose=0,
    )  # fmt: skip
    return history.history["loss"], [end - ends[0] for end in ends[1:]]


def test_time_limit_of_zero_stops_after_the_first_epoch():
    limit = TimeLimit(seconds=0.0)
    losses, _ = fit(tiny_model(), limit, 5)
    assert len(losses) == len(limit.epoch_seconds) == 1


def test_time_limit_stops_after_the_epoch_that_reaches_the_budget():
    model = tiny_model()
    fit(model, TimeLimit(None), 1)  # compiled now: epochs of ~0.1-0.2 s
    budget = 0.5
    losses, ends = fit(model, TimeLimit(budget), 100, pause=PAUSE)
    assert len(losses) < 100  # 5 s or more if it never stopped
    # Not before the budget, and not an epoch after the one that reached it.
    assert all(end < budget for end in ends[:-1])
    assert ends[-1] >= budget


def test_time_limit_none_never_stops_and_times_each_epoch():
    limit = TimeLimit(seconds=None)
    losses, ends = fit(tiny_model(), limit, 3, pause=PAUSE)
    assert len(losses) == len(limit.epoch_seconds) == 3
    # Each epoch slept PAUSE and fits between the end of the one before
    # (or the start) and its own end.
    assert min(limit.epoch_seconds) >= PAUSE
    np.testing.assert_array_less(limit.epoch_seconds, np.diff([0.0, *ends]))


def test_time_limit_restarts_its_record_on_each_fit():
    model, limit = tiny_model(), TimeLimit(seconds=None)
    fit(model, limit, 3)
    fit(model, limit, 2)
    assert len(limit.epoch_seconds) == 2


@pytest.mark.parametrize("seconds", [-1, float("nan"), "5", True])
def test_time_limit_rejects_bad_seconds(seconds):
    with pytest.raises(ValueError, match="`seconds`"):
        TimeLimit(seconds)
