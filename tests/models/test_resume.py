"""`fit` + `BackupAndRestore` with dropout resumes exactly, on any backend.

The dropout seed state is saved with the weights (`layers.Dropout`), so a
run that crashes after epoch 1 and is resumed by a fresh model ends with
the weights of an uninterrupted run. (A SIGKILL version, for the custom
training loop `training.train` in fresh processes, is in
`tests/test_training.py`.)
"""

import keras
import numpy as np
import pytest

from keras_attention.models import Transformer
from tests.scripts.small_model import pair_data


def build():
    keras.utils.set_random_seed(0)
    model = Transformer(20, 20, num_layers=1, hidden_dim=8, num_heads=2,
                        intermediate_dim=16, dropout=0.3)  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


class Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated preemption")


def test_fit_with_dropout_resumes_to_the_uninterrupted_weights(tmp_path):
    inputs, targets = pair_data()
    fit = dict(batch_size=16, epochs=3, shuffle=False, verbose=0)
    uninterrupted = build()
    uninterrupted.fit(inputs, targets, **fit)
    with pytest.raises(RuntimeError, match="preemption"):
        build().fit(
            inputs,
            targets,
            callbacks=[keras.callbacks.BackupAndRestore(tmp_path), Crash()],
            **fit,
        )
    resumed = build()
    history = resumed.fit(
        inputs,
        targets,
        callbacks=[keras.callbacks.BackupAndRestore(tmp_path)],
        **fit,
    )
    assert len(history.history["loss"]) == 1  # epoch 3 only
    for expected, actual in zip(
        uninterrupted.get_weights(), resumed.get_weights()
    ):
        np.testing.assert_allclose(actual, expected, atol=1e-6)
