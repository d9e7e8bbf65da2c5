"""`MultiHeadAttention(use_sinks=True)` and `qk_norm="rms"`: NumPy formulas,
every path (dense, chunked, cached), gradients, saving."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention.layers import MultiHeadAttention
from tests.testing import check_layer
from tests.testing import decode_in_steps
from tests.testing import gradients

rng = np.random.default_rng(21)
B, T, WIDTH, H, D = 2, 7, 8, 4, 4
X = rng.normal(size=(B, T, WIDTH)).astype("float32")
PADDING = np.ones((B, T), bool)
PADDING[1, 5:] = False


def numpy_heads(layer, x):
    """Projected (B, T, H, D) queries, keys, values in NumPy."""
    return [
        np.asarray(dense(x))
        for dense in (layer.query_dense, layer.key_dense, layer.value_dense)
    ]


def rms(x, gain, epsilon=1e-6):
    return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + epsilon) * gain


def numpy_output(layer, x, mask, sinks=None, gains=None):
    q, k, v = numpy_heads(layer, x)
    if gains is not None:
        q, k = rms(q, gains[0]), rms(k, gains[1])
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)
    logits = np.where(mask, logits, -np.inf)
    top = logits.max(-1, keepdims=True)
    if sinks is not None:
        top = np.maximum(top, sinks.reshape(1, H, 1, 1))
    weights = np.exp(logits - top)
    total = weights.sum(-1, keepdims=True)
    if sinks is not None:
        total = total + np.exp(sinks.reshape(1, H, 1, 1) - top)
    weights = weights / total
    heads = np.einsum("bhqk,bkhd->bqhd", weights, v)
    return np.asarray(layer.output_dense(heads)), weights


def causal_padded_mask():
    causal = np.tril(np.ones((T, T), bool))
    return causal[None, None] & PADDING[:, None, None, :]


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_sinks_equal_numpy_and_rows_sum_below_one(chunk_size):
    layer = MultiHeadAttention(H, D, use_sinks=True, chunk_size=chunk_size)
    layer(X, X)
    sinks = rng.normal(size=(H,)).astype("float32")
    layer.sinks.assign(sinks)
    expected, expected_weights = numpy_output(
        layer, X, causal_padded_mask(), sinks=sinks
    )
    out = layer(X, X, value_mask=PADDING, use_causal_mask=True)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    _, weights = layer(
        X, X, value_mask=PADDING, use_causal_mask=True,
        return_attention_scores=True,
    )  # fmt: skip
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)
    assert np.all(np.asarray(weights).sum(-1) < 1.0)


def test_sinks_weight_is_named_zero_initialised_and_changes_nothing_at_zero():
    plain = MultiHeadAttention(H, D)
    sinked = MultiHeadAttention(H, D, use_sinks=True)
    plain(X, X), sinked(X, X)
    assert [w.path.split("/")[-1] for w in sinked.weights].count("sinks") == 1
    assert tuple(sinked.sinks.shape) == (H,)
    np.testing.assert_array_equal(sinked.sinks, 0.0)
    for target, source in zip(
        (sinked.query_dense, sinked.key_dense, sinked.value_dense,
         sinked.output_dense),
        (plain.query_dense, plain.key_dense, plain.value_dense,
         plain.output_dense),
    ):  # fmt: skip
        target.set_weights(source.get_weights())
    # A zero sink is one more logit of 0: weights shrink, so outputs differ.
    _, weights = sinked(X, X, return_attention_scores=True)
    _, plain_weights = plain(X, X, return_attention_scores=True)
    logits_sum = np.asarray(plain_weights)  # softmax without the sink
    assert np.all(np.asarray(weights) < logits_sum)


def test_chunked_sinks_gradients_equal_dense():
    """The chunked custom gradient of the sinks, queries, keys and values
    equals the dense path's autodiff."""
    keras.utils.set_random_seed(1)
    dense = MultiHeadAttention(H, D, use_sinks=True)
    chunked = MultiHeadAttention(H, D, use_sinks=True, chunk_size=2)
    dense(X, X), chunked(X, X)
    dense.sinks.assign(rng.normal(size=(H,)).astype("float32"))
    chunked.set_weights(dense.get_weights())
    results = []
    for layer in (dense, chunked):
        results.append(
            gradients(
                lambda x, layer=layer: ops.sum(
                    ops.square(layer(x, x, use_causal_mask=True))
                ),
                layer.trainable_weights,
                [X],
            )
        )
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(results[0][0]).sum() > 0  # the sinks do get a gradient


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_qk_norm_equals_numpy(chunk_size):
    layer = MultiHeadAttention(H, D, qk_norm="rms", chunk_size=chunk_size)
    layer(X, X)
    gains = [rng.normal(size=(D,)).astype("float32") for _ in range(2)]
    layer.query_norm_scale.assign(gains[0])
    layer.key_norm_scale.assign(gains[1])
    expected, _ = numpy_output(layer, X, causal_padded_mask(), gains=gains)
    out = layer(X, X, value_mask=PADDING, use_causal_mask=True)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_qk_norm_bounds_the_logits_of_huge_inputs():
    layer = MultiHeadAttention(H, D, qk_norm="rms")
    huge = X * 1e4
    _, weights = layer(huge, huge, return_attention_scores=True)
    weights = np.asarray(weights)
    # Unit-RMS heads: |q·k| / √D ≤ D / √D, whatever the inputs' scale.
    assert np.all(np.isfinite(weights))
    assert weights.max() < 0.999


@pytest.mark.parametrize(
    "kwargs",
    [
        {"use_sinks": True},
        {"qk_norm": "rms", "rotary_max_wavelength": 100},
        {"use_sinks": True, "qk_norm": "rms", "chunk_size": 2},
    ],
)
def test_cached_decoding_equals_full_pass(kwargs):
    layer = MultiHeadAttention(H, D, **kwargs)
    layer(X, X)
    if kwargs.get("use_sinks"):
        layer.sinks.assign(rng.normal(size=(H,)).astype("float32"))
    expected = np.asarray(layer(X, X, use_causal_mask=True))
    got, _ = decode_in_steps(layer, X)
    np.testing.assert_allclose(got, expected, atol=2e-5)


@pytest.mark.parametrize(
    "kwargs, num_weights",
    [({"use_sinks": True}, 9), ({"qk_norm": "rms"}, 10)],
)
def test_check_layer(kwargs, num_weights):
    check_layer(
        MultiHeadAttention,
        {"num_heads": H, "key_dim": D, **kwargs},
        [X, X],
        (B, T, WIDTH),
        num_weights=num_weights,
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [({"qk_norm": "layer"}, "qk_norm"), ({"use_sinks": 1}, "use_sinks")],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MultiHeadAttention(H, D, **kwargs)
