"""`DifferentialAttention`: Ye et al.'s formula in NumPy, every path."""

import math

import numpy as np
import pytest

from keras_attention.layers.differential import DifferentialAttention
from keras_attention.layers.differential import lambda_init
from tests.testing import check_layer
from tests.testing import decode_in_steps

rng = np.random.default_rng(31)
B, T, WIDTH, H, D = 2, 6, 8, 2, 4
X = rng.normal(size=(B, T, WIDTH)).astype("float32")
PADDING = np.ones((B, T), bool)
PADDING[0, 4:] = False


def softmax(logits, mask):
    logits = np.where(mask, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def numpy_differential(layer, x, mask):
    """The paper's DiffAttn per head, RMS-normed, scaled, projected."""
    q, k, v = (
        np.asarray(dense(x))
        for dense in (layer.query_dense, layer.key_dense, layer.value_dense)
    )  # (B, T, H, 2D), (B, T, H, 2D), (B, T, H, Dv)
    q1, q2, k1, k2 = q[..., :D], q[..., D:], k[..., :D], k[..., D:]
    a1 = softmax(np.einsum("bqhd,bkhd->bhqk", q1, k1) / math.sqrt(D), mask)
    a2 = softmax(np.einsum("bqhd,bkhd->bhqk", q2, k2) / math.sqrt(D), mask)
    lq1, lk1, lq2, lk2 = (
        np.asarray(getattr(layer, f"lambda_{n}"))
        for n in ("q1", "k1", "q2", "k2")
    )
    lam = np.exp(lq1 @ lk1) - np.exp(lq2 @ lk2) + layer.lambda_init
    attention = a1 - lam * a2  # (B, H, Tq, Tk)
    heads = np.einsum("bhqk,bkhd->bqhd", attention, v)
    gain = np.asarray(layer.head_norm)
    normed = heads / np.sqrt(np.mean(heads**2, -1, keepdims=True) + 1e-5)
    heads = (1 - layer.lambda_init) * normed * gain
    return np.asarray(layer.output_dense(heads)), attention


def built(**kwargs):
    layer = DifferentialAttention(H, D, layer_index=4, seed=3, **kwargs)
    layer(X, X)
    layer.head_norm.assign(rng.uniform(0.5, 1.5, size=(2 * D,)))
    return layer


def causal_padded():
    return np.tril(np.ones((T, T), bool))[None, None] & PADDING[:, None, None]


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_equals_the_paper_formula_with_masks(chunk_size):
    layer = built(chunk_size=chunk_size)
    expected, expected_weights = numpy_differential(layer, X, causal_padded())
    out = layer(X, X, value_mask=PADDING, use_causal_mask=True)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    _, weights = layer(
        X, X, value_mask=PADDING, use_causal_mask=True,
        return_attention_scores=True,
    )  # fmt: skip
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)
    lam = float(layer.lambda_value())
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1 - lam, atol=1e-5)


def test_lambda_init_schedule_and_weights():
    assert lambda_init(1) == pytest.approx(0.2)
    assert lambda_init(4) == pytest.approx(0.8 - 0.6 * math.exp(-0.9))
    layer = built()
    assert layer.lambda_init == pytest.approx(lambda_init(4))
    shapes = {w.path.split("/")[-1]: tuple(w.shape) for w in layer.weights}
    for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
        assert shapes[name] == (D,)
    assert shapes["head_norm"] == (2 * D,)
    # Seeded per weight: the two pairs differ, so lambda is not pinned.
    assert not np.allclose(layer.lambda_q1, layer.lambda_q2)
    assert tuple(layer.query_dense.kernel.shape) == (WIDTH, H, 2 * D)
    assert tuple(layer.value_dense.kernel.shape) == (WIDTH, H, 2 * D)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"rotary_max_wavelength": 100}, {"chunk_size": 2},
     {"num_key_value_heads": 1}],
)  # fmt: skip
def test_cached_decoding_equals_full_pass(kwargs):
    layer = built(**kwargs)
    expected = np.asarray(layer(X, X, use_causal_mask=True))
    got, cache = decode_in_steps(layer, X)
    assert cache.shape == (B, 2, T, layer.num_key_value_heads, 2 * D)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_rotary_rotates_each_half_on_its_own():
    """Shifting every position by the same offset changes nothing: each
    half's scores depend only on relative positions."""
    layer = built(rotary_max_wavelength=50)
    q = np.asarray(layer.query_dense(X))
    for offset in (0, 7):
        rotated = np.asarray(layer._position(q, offset, "query"))
        halves = rotated.reshape(B, T, H, 2, D)
        scores = np.einsum("bqhsd,bkhsd->bhsqk", halves, halves)
        if offset == 0:
            reference = scores
    np.testing.assert_allclose(scores, reference, atol=1e-4)


def test_check_layer():
    check_layer(
        DifferentialAttention,
        {"num_heads": H, "key_dim": D, "layer_index": 2},
        [X, X],
        (B, T, WIDTH),
        num_weights=13,
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"layer_index": 0}, "layer_index"),
        ({"key_dim": 0}, "key_dim"),
        ({"score": "dot"}, "score"),
        ({"use_sinks": True}, "use_sinks"),
        ({"qk_norm": "rms"}, "qk_norm"),
        ({"key_dim": 3, "rotary_max_wavelength": 100}, "key_dim"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    arguments = {"num_heads": H, "key_dim": D, **kwargs}
    with pytest.raises(ValueError, match=name):
        DifferentialAttention(**arguments)
