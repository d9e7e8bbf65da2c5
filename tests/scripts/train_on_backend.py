"""Subprocess body of the export recipe's test: train on another backend.

    KERAS_BACKEND=jax python tests/scripts/train_on_backend.py DIR

Trains the tiny Transformer of `tests/test_export_generator.py` for a few
steps on this backend, then writes `DIR/model.weights.h5`, and the source
and `generate`'s greedy tokens to `DIR/tokens.npz`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_attention.datasets import copy_reverse  # noqa: E402
from keras_attention.models import Transformer  # noqa: E402

ARGUMENTS = dict(
    source_vocab_size=12, target_vocab_size=12, num_layers=1, hidden_dim=16,
    num_heads=2, intermediate_dim=32, max_length=10, dropout=0.0,
)  # fmt: skip


def main():
    folder = sys.argv[1]
    keras.utils.set_random_seed(0)
    data = copy_reverse(512, 2, 6, num_symbols=8, seed=1, source_length=8)
    model = Transformer(**ARGUMENTS)
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    inputs = {"source": data["source"], "target_in": data["target_in"]}
    model.fit(inputs, data["target_out"], epochs=3, verbose=0)
    model.save_weights(os.path.join(folder, "model.weights.h5"))
    source = data["source"][:4]
    tokens = keras.ops.convert_to_numpy(model.generate(source, 9))
    np.savez(os.path.join(folder, "tokens.npz"), source=source, tokens=tokens)


if __name__ == "__main__":
    main()
