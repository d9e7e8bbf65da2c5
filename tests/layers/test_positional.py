"""Tests of the positional encodings."""

import warnings

import keras
import keras_hub
import numpy as np
import pytest

from keras_attention.layers import LearnedPositionalEmbedding
from keras_attention.layers import RotaryEmbedding
from keras_attention.layers import SinusoidalPositionalEncoding
from keras_attention.layers import TokenAndPositionEmbedding
from tests.testing import check_layer

rng = np.random.default_rng(0)


def vaswani(length, dim, start=0, wavelength=10000):
    """`PE(p, 2i) = sin(p / λ^(2i/d))`, `PE(p, 2i+1) = cos(...)`."""
    positions = np.arange(start, start + length)[:, None]
    i = np.arange(dim) // 2
    angles = positions / wavelength ** (2 * i / dim)
    return np.where(np.arange(dim) % 2, np.cos(angles), np.sin(angles))


@pytest.mark.parametrize("start_index", [0, 7])
def test_sinusoidal_matches_formula_and_keras_hub(start_index):
    x = np.zeros((2, 6, 10), "float32")
    ours = SinusoidalPositionalEncoding()(x, start_index=start_index)
    theirs = keras_hub.layers.SinePositionEncoding()(x, start_index=start_index)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(ours[1], vaswani(6, 10, start_index), atol=1e-5)


def test_sinusoidal_start_index_continues_the_sequence():
    layer = SinusoidalPositionalEncoding(max_wavelength=100)
    full = layer(np.zeros((1, 8, 6)))
    steps = [layer(np.zeros((1, 1, 6)), start_index=i) for i in range(8)]
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-6)


def test_learned_start_index_and_too_long_error():
    layer = LearnedPositionalEmbedding(max_length=6)
    full = np.asarray(layer(np.zeros((2, 6, 4))))
    np.testing.assert_allclose(full[0], layer.embeddings)
    part = layer(np.zeros((1, 2, 4)), start_index=3)
    np.testing.assert_allclose(part[0], full[0, 3:5])
    with pytest.raises(ValueError, match="max_length=6"):
        layer(np.zeros((1, 7, 4)))
    with pytest.raises(ValueError, match="max_length=6"):
        LearnedPositionalEmbedding(max_length=6)(np.zeros((1, 7, 4)))


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", None])
def test_token_and_position_embedding_values_and_mask(positional):
    layer = TokenAndPositionEmbedding(
        vocab_size=10, embedding_dim=4, max_length=8, positional=positional
    )
    tokens = np.array([[3, 4, 5, 0], [1, 0, 0, 0]])
    out = np.asarray(layer(tokens))
    table = np.asarray(layer.token_embedding.embeddings)
    expected = table[tokens] * 2.0  # √4
    if positional == "sinusoidal":
        expected = expected + vaswani(4, 4)
    elif positional == "learned":
        expected = (
            expected + np.asarray(layer.position_embedding.embeddings)[:4]
        )
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_array_equal(layer.compute_mask(tokens), tokens != 0)


def test_token_embedding_mask_propagates_in_a_model():
    inputs = keras.Input((None,), dtype="int32")
    x = TokenAndPositionEmbedding(10, 4, scale_embeddings=False)(inputs)
    assert x._keras_mask is not None
    # A masked average only sees real tokens.
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, [x, pooled])
    tokens = np.array([[3, 4, 0, 0]])
    out, avg = (np.asarray(t) for t in model(tokens))
    np.testing.assert_allclose(avg[0], np.mean(out[0, :2], axis=0), atol=1e-6)


def test_token_and_position_embedding_errors():
    with pytest.raises(ValueError, match="max_length"):
        TokenAndPositionEmbedding(10, 4, positional="learned")
    with pytest.raises(ValueError, match="positional"):
        TokenAndPositionEmbedding(10, 4, positional="relative")


@pytest.mark.parametrize("shape", [(2, 5, 3, 8), (2, 5, 8)])
def test_rotary_matches_keras_hub(shape):
    x = rng.normal(size=shape).astype("float32")
    ours = RotaryEmbedding(max_wavelength=100)(x, start_index=3)
    theirs = keras_hub.layers.RotaryEmbedding(max_wavelength=100)(
        x, start_index=3
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_rotary_passes_the_embedding_mask_through():
    # Rotation keeps which positions are padding: the mask of an
    # `Embedding(mask_zero=True)` reaches the next layer, with no warning.
    inputs = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 8, mask_zero=True)(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rotated = RotaryEmbedding(max_wavelength=100)(embedded)
        pooled = keras.layers.GlobalAveragePooling1D()(rotated)  # masked
        model = keras.Model(inputs, [rotated, pooled])
        tokens = np.array([[3, 4, 5, 0], [6, 0, 0, 0]])
        out, avg = (np.asarray(t) for t in model(tokens))
    np.testing.assert_allclose(avg[0], out[0, :3].mean(0), atol=1e-6)
    np.testing.assert_allclose(avg[1], out[1, 0], atol=1e-6)
    mask = np.array([[True, False]])
    assert RotaryEmbedding().compute_mask(np.ones((1, 2, 4)), mask) is mask


def test_rotary_dot_product_depends_on_relative_position():
    layer = RotaryEmbedding(max_wavelength=50)
    q, k = rng.normal(size=(2, 1, 1, 8)).astype("float32")
    rotated_q = [np.asarray(layer(q, start_index=i))[0, 0] for i in range(6)]
    rotated_k = [np.asarray(layer(k, start_index=i))[0, 0] for i in range(6)]
    dots = [rotated_q[i] @ rotated_k[i - 2] for i in range(2, 6)]
    np.testing.assert_allclose(dots, dots[0], rtol=1e-4)
    np.testing.assert_allclose(
        np.linalg.norm(rotated_q, axis=-1), np.linalg.norm(q), rtol=1e-5
    )


@pytest.mark.parametrize(
    "cls, kwargs, inputs, shape",
    [
        (
            SinusoidalPositionalEncoding,
            {},
            np.zeros((2, 5, 6), "float32"),
            (2, 5, 6),
        ),
        (
            LearnedPositionalEmbedding,
            {"max_length": 8},
            np.zeros((2, 5, 6), "float32"),
            (2, 5, 6),
        ),
        (
            TokenAndPositionEmbedding,
            {
                "vocab_size": 9,
                "embedding_dim": 6,
                "positional": "learned",
                "max_length": 8,
            },
            np.array([[1, 2, 0, 0, 0]] * 2),
            (2, 5, 6),
        ),
        (RotaryEmbedding, {}, np.ones((2, 5, 2, 6), "float32"), (2, 5, 2, 6)),
    ],
)
def test_check_layer(cls, kwargs, inputs, shape):
    check_layer(cls, kwargs, inputs, shape)
