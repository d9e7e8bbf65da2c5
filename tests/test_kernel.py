"""The attention kernel: every path equals the NumPy formula."""

import math

import numpy as np
import pytest
from keras import ops

from keras_attention import kernel
from keras_attention import mods
from keras_attention import ops as attention_ops
from keras_attention import scores

rng = np.random.default_rng(11)
B, H, TQ, TK, D = 2, 3, 5, 7, 4
Q = rng.normal(size=(B, H, TQ, D)).astype("float32")
K = rng.normal(size=(B, H, TK, D)).astype("float32")
V = rng.normal(size=(B, H, TK, D)).astype("float32")
KEY_MASK = np.array([[1] * 5 + [0] * 2, [0] + [1] * 6], bool)
BIAS = rng.normal(size=(B, H, TQ, TK)).astype("float32")


def numpy_attention(scale, mask, bias=0.0, sinks=None):
    logits = np.einsum("bhqd,bhkd->bhqk", Q, K) * scale + bias
    logits = np.where(mask, logits, -np.inf)
    top = logits.max(-1, keepdims=True)
    if sinks is not None:
        top = np.maximum(top, sinks)
    top = np.where(np.isfinite(top), top, 0.0)
    weights = np.exp(logits - top)
    total = weights.sum(-1, keepdims=True)
    if sinks is not None:
        total = total + np.exp(sinks - top)
    weights = np.where(total > 0, weights / np.maximum(total, 1e-30), 0.0)
    return np.einsum("bhqk,bhkd->bhqd", weights, V), weights


def causal_mask(offset=0):
    return (np.arange(TK)[None, :] <= offset + np.arange(TQ)[:, None])[
        None, None
    ] & KEY_MASK[:, None, None, :]


@pytest.mark.parametrize("chunk_size", [None, 2, 3])
@pytest.mark.parametrize("allow_fused", [True, False])
def test_every_path_equals_numpy(chunk_size, allow_fused):
    expected, _ = numpy_attention(1 / math.sqrt(D), causal_mask(2), BIAS)
    output, weights = kernel.attention(
        Q, K, V, score=scores.ScaledDot(), key_mask=KEY_MASK,
        use_causal_mask=True, cache_update_index=2, attention_bias=BIAS,
        heads=(H,), chunk_size=chunk_size, allow_fused=allow_fused,
    )  # fmt: skip
    assert weights is None
    np.testing.assert_allclose(output, expected, atol=1e-5)


def test_weights_are_returned_by_the_dense_path_even_with_a_chunk_size():
    expected, expected_weights = numpy_attention(1.0, causal_mask())
    output, weights = kernel.attention(
        Q, K, V, key_mask=KEY_MASK, use_causal_mask=True, heads=(H,),
        chunk_size=2, return_weights=True,
    )  # fmt: skip
    np.testing.assert_allclose(output, expected, atol=1e-5)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)


def test_cache_update_index_hides_the_unwritten_keys():
    """Without a causal mask, keys past `index + Tq - 1` are still never
    seen: they are the unwritten end of the cache."""
    poisoned = V.copy()
    poisoned[:, :, 2 + TQ :] = np.nan
    output, _ = kernel.attention(
        Q, K, poisoned, cache_update_index=2, heads=(H,)
    )
    mask = np.broadcast_to(np.arange(TK) < 2 + TQ, (1, 1, TQ, TK))
    expected, _ = numpy_attention(1.0, mask)
    np.testing.assert_allclose(output, expected, atol=1e-5)


def test_score_layer_and_scale_enter_the_logits():
    """A score with no dot-product form is called, then scaled."""
    general = scores.General()
    general.build(Q.shape, K.shape)
    output, weights = kernel.attention(
        Q, K, V, score=general, scale=0.5, return_weights=True
    )
    kernel_ = np.asarray(general.kernel)
    logits = 0.5 * np.einsum("bhqd,de,bhke->bhqk", Q, kernel_, K)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, expected, atol=1e-5)


def test_modifier_then_bias_on_every_path():
    cap = mods.SoftCap(1.5)
    logits = np.einsum("bhqd,bhkd->bhqk", Q, K)
    capped = 1.5 * np.tanh(logits / 1.5) + BIAS
    weights = np.exp(capped - capped.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = np.einsum("bhqk,bhkd->bhqd", weights, V)
    for chunk_size in (None, 3):
        output, _ = kernel.attention(
            Q, K, V, score_mod=cap, attention_bias=BIAS, heads=(H,),
            chunk_size=chunk_size,
        )  # fmt: skip
        np.testing.assert_allclose(output, expected, atol=1e-5)


def test_sinks_take_mass_in_the_denominator_only():
    sinks = np.array([0.0, 1.0, -2.0], "float32")
    mask = causal_mask()
    expected, expected_weights = numpy_attention(
        1.0, mask, sinks=sinks.reshape(1, H, 1, 1)
    )
    output, weights = kernel.attention(
        Q, K, V, key_mask=KEY_MASK, use_causal_mask=True, heads=(H,),
        sinks=sinks, return_weights=True,
    )  # fmt: skip
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)
    np.testing.assert_allclose(output, expected, atol=1e-5)
    sums = np.asarray(weights).sum(-1)
    assert np.all(sums < 1.0)  # a query may give its mass to no key
    assert np.all(sums[1, :, 0] == 0.0)  # sees no key: zero, not NaN


def test_masked_softmax_with_sinks_of_a_fully_masked_row_is_zero():
    scores_ = ops.convert_to_tensor(np.ones((1, 2, 3), "float32"))
    mask = np.array([[[True, True, False], [False, False, False]]])
    weights = np.asarray(
        attention_ops.masked_softmax(scores_, mask, sinks=np.zeros((1, 1, 1)))
    )
    share = math.e / (2 * math.e + 1)  # e¹ / (e¹ + e¹ + e⁰)
    np.testing.assert_allclose(weights[0, 0], [share, share, 0], atol=1e-6)
    np.testing.assert_array_equal(weights[0, 1], 0.0)
