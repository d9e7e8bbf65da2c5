"""Tiny models and data shared by the distributed and mixed-precision tests.

`MODELS[name]()` returns a compiled model; `DATA[name]()` returns
`(inputs, targets)` NumPy data for it (64 examples).
"""

import keras
import numpy as np

import keras_attention as ka
from keras_attention.models import Seq2Seq
from keras_attention.models import Transformer
from keras_attention.models import TransformerClassifier


def _compile(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def make_model():
    """A custom functional model built from our layers."""
    tokens = keras.Input((8,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    x = ka.Attention(score="general")(x, x)
    logits = keras.layers.Dense(3)(ka.AttentionPooling()(x))
    return _compile(keras.Model(tokens, logits))


def make_seq2seq():
    return _compile(Seq2Seq(20, 20, embedding_dim=8, units=8))


def make_transformer():
    return _compile(
        Transformer(
            20, 20, num_layers=1, hidden_dim=8, num_heads=2,
            intermediate_dim=16, dropout=0.0,
        )
    )  # fmt: skip


def make_classifier():
    return _compile(
        TransformerClassifier(
            20, 3, num_layers=1, hidden_dim=8, num_heads=2,
            intermediate_dim=16, dropout=0.0, pooling="attention",
        )
    )  # fmt: skip


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 20, size=(n, 8)).astype("int32")
    y = (x[:, 0] % 3).astype("int32")
    return x, y


def pair_data(n=64):
    """Reverse-the-source pairs, no padding (every token counts)."""
    rng = np.random.default_rng(0)
    source = rng.integers(3, 20, size=(n, 6)).astype("int32")
    target = source[:, ::-1]
    target_in = np.concatenate([np.ones((n, 1), "int32"), target[:, :-1]], 1)
    return {"source": source, "target_in": target_in}, target


MODELS = {
    "custom": make_model,
    "seq2seq": make_seq2seq,
    "transformer": make_transformer,
    "classifier": make_classifier,
}
DATA = {
    "custom": data,
    "seq2seq": pair_data,
    "transformer": pair_data,
    "classifier": data,
}
