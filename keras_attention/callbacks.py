"""Keras callbacks for training on a time budget."""

import time

import keras

from keras_attention import utils


class TimeLimit(keras.callbacks.Callback):
    """Stop `fit` after the epoch that reaches a wall-clock budget.

    Training always ends on a whole epoch. `epoch_seconds` keeps the time of
    each epoch, e.g. to report seconds per epoch.

    Args:
        seconds: the training budget, in seconds; `None` never stops
            (the epoch times are still recorded).

    Example:
        >>> import numpy as np
        >>> model = keras.Sequential([keras.layers.Dense(1)])
        >>> model.compile("sgd", "mse")
        >>> limit = TimeLimit(seconds=0.0)
        >>> history = model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=50,
        ...                     callbacks=[limit], verbose=0)
        >>> len(history.history["loss"]), len(limit.epoch_seconds)
        (1, 1)
    """

    def __init__(self, seconds):
        super().__init__()
        utils.check_number(
            "seconds", seconds, 0, include_low=True, allow_none=True
        )
        self.seconds = seconds
        self.epoch_seconds = []

    def on_train_begin(self, logs=None):
        self.epoch_seconds = []
        self._start = self._epoch_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.epoch_seconds.append(now - self._epoch_start)
        if self.seconds is not None and now - self._start >= self.seconds:
            self.model.stop_training = True
