import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from keras import ops

from keras_attention import ops as attention_ops
from keras_attention.constants import mask_value
from tests.testing import gradients

rng = np.random.default_rng(0)


def numpy_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_masked_softmax_without_mask_is_softmax():
    scores = rng.normal(size=(2, 3, 5)).astype("float32")
    weights = np.asarray(attention_ops.masked_softmax(scores))
    np.testing.assert_allclose(weights, numpy_softmax(scores), atol=1e-6)


def test_masked_softmax_renormalises_over_unmasked_keys():
    scores = rng.normal(size=(2, 3, 5)).astype("float32")
    mask = rng.random((2, 3, 5)) > 0.4
    mask[..., 0] = True
    weights = np.asarray(attention_ops.masked_softmax(scores, mask))
    expected = np.where(mask, np.exp(scores), 0.0)
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, expected, atol=1e-6)


def test_fully_masked_row_gives_zero_weights_and_zero_output():
    scores = rng.normal(size=(1, 2, 4)).astype("float32")
    value = rng.normal(size=(1, 4, 3)).astype("float32")
    mask = np.array([[[True, False, True, False], [False] * 4]])
    output, weights = attention_ops.attend(scores, value, mask)
    output, weights = np.asarray(output), np.asarray(weights)
    np.testing.assert_array_equal(weights[0, 1], 0.0)
    np.testing.assert_array_equal(output[0, 1], 0.0)
    assert np.isfinite(output).all()


def numpy_sink_softmax(x, mask, sinks):
    """The paper's formula in float64: masked keys out, the sink in the
    denominator only."""
    e = np.where(mask, np.exp(x), 0.0)
    return e / (e.sum(-1, keepdims=True) + np.exp(sinks))


def numerical_gradient(fn, x, step=1e-6):
    """Central differences of the scalar `fn` at float64 `x`."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        delta = np.zeros_like(x)
        delta[index] = step
        grad[index] = (fn(x + delta) - fn(x - delta)) / (2 * step)
    return grad


def test_masked_softmax_with_sinks_gradient_equals_finite_differences():
    """The written-out gradient of the sink softmax (scores and sinks) is
    the float64 central difference of the formula, a fully masked row
    included (zero weights, zero gradient, no NaN)."""
    scores = rng.normal(size=(2, 2, 3, 4)) * 2.0
    sinks = rng.normal(size=(1, 2, 1, 1))
    mask = rng.random((2, 1, 3, 4)) > 0.3
    mask[0, 0, 1] = False  # a query that sees no key
    mask[1, 0, :, 0] = True
    cotangent = rng.normal(size=scores.shape)

    def loss(x, s):
        return np.sum(cotangent * numpy_sink_softmax(x, mask, s))

    expected = [
        numerical_gradient(lambda x: loss(x, sinks), scores),
        numerical_gradient(lambda s: loss(scores, s), sinks),
    ]
    actual = gradients(
        lambda x, s: ops.sum(
            ops.convert_to_tensor(cotangent, "float32")
            * attention_ops.masked_softmax(x, mask, sinks=s)
        ),
        inputs=(scores.astype("float32"), sinks.astype("float32")),
    )
    for got, want in zip(actual, expected):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.abs(expected[1]).sum() > 0.1  # the sinks do move the loss
    np.testing.assert_array_equal(actual[0][0, :, 1], 0.0)


def test_masked_softmax_is_float32_and_finite_for_float16_scores():
    scores = (rng.normal(size=(2, 4, 6)) * 1e4).astype("float16")
    mask = np.zeros((2, 4, 6), bool)
    mask[0, :, :2] = True
    weights = np.asarray(attention_ops.masked_softmax(scores, mask))
    assert weights.dtype == np.float32
    assert np.isfinite(weights).all()
    np.testing.assert_allclose(weights.sum(-1)[0], 1.0, atol=1e-6)
    np.testing.assert_array_equal(weights[1], 0.0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_mask_value_is_finite_in_dtype(dtype):
    import ml_dtypes

    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    value = np.array(mask_value(dtype)).astype(np_dtype)
    assert np.isfinite(value.astype("float32")) and value < -1e4


def test_build_mask_causal_with_offsets():
    mask = np.asarray(attention_ops.build_mask(2, 4, use_causal_mask=True))
    np.testing.assert_array_equal(mask[0], np.tril(np.ones((2, 4), bool)))
    mask = attention_ops.build_mask(
        2, 3, use_causal_mask=True, query_offset=3, key_offset=2
    )  # queries at 3, 4; keys at 2, 3, 4
    np.testing.assert_array_equal(
        np.asarray(mask)[0], [[True, True, False], [True, True, True]]
    )


def test_build_mask_sliding_window():
    mask = np.asarray(attention_ops.build_mask(4, 4, sliding_window=2))[0]
    positions = np.arange(4)
    expected = np.abs(positions[:, None] - positions[None, :]) < 2
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("rank", [3, 4, 5])
def test_build_mask_combines_all_masks(rank):
    query_mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    key_mask = np.array([[1, 1, 1, 0], [1, 0, 1, 1]], bool)
    explicit = rng.random((2, 3, 4)) > 0.3
    mask = attention_ops.build_mask(
        3, 4, query_mask, key_mask, explicit, use_causal_mask=True, rank=rank
    )
    assert len(mask.shape) == rank
    causal = np.tril(np.ones((3, 4), bool))
    expected = query_mask[:, :, None] & key_mask[:, None, :] & explicit & causal
    expected = expected.reshape((2,) + (1,) * (rank - 3) + (3, 4))
    np.testing.assert_array_equal(np.asarray(mask), expected)


def test_build_mask_keeps_a_per_head_mask():
    per_head = rng.random((2, 3, 4, 5)) > 0.5  # (B, H, Tq, Tk)
    key_mask = rng.random((2, 5)) > 0.3
    mask = attention_ops.build_mask(
        4, 5, key_mask=key_mask, attention_mask=per_head, rank=4
    )
    np.testing.assert_array_equal(
        np.asarray(mask), per_head & key_mask[:, None, None, :]
    )


def test_build_mask_is_none_without_masks():
    assert attention_ops.build_mask(3, 3) is None


@settings(max_examples=30, deadline=None)
@given(
    tq=st.integers(1, 5),
    tk=st.integers(1, 6),
    seed=st.integers(0, 1000),
)
def test_attend_is_weighted_sum_of_values(tq, tk, seed):
    r = np.random.default_rng(seed)
    scores = r.normal(size=(2, tq, tk)).astype("float32")
    value = r.normal(size=(2, tk, 3)).astype("float32")
    mask = r.random((2, tq, tk)) > 0.3
    output, weights = attention_ops.attend(scores, value, mask)
    expected_w = np.where(mask, np.exp(scores - scores.max()), 0.0)
    total = expected_w.sum(-1, keepdims=True)
    expected_w = np.divide(
        expected_w, total, out=np.zeros_like(expected_w), where=total > 0
    )
    np.testing.assert_allclose(np.asarray(weights), expected_w, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(output), expected_w @ value, atol=1e-5
    )
