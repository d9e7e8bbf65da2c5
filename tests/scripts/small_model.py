"""A tiny attention classifier shared by the distributed tests."""

import keras
import numpy as np

import keras_attention as ka


def make_model():
    tokens = keras.Input((8,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    x = ka.Attention(score="general")(x, x)
    logits = keras.layers.Dense(3)(ka.AttentionPooling()(x))
    model = keras.Model(tokens, logits)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 20, size=(n, 8)).astype("int32")
    y = (x[:, 0] % 3).astype("int32")
    return x, y
