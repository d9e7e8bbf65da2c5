"""Tests of `MultiHeadAttention`: keras parity, masks, GQA, chunks, cache."""

import hypothesis
import keras
import numpy as np
import pytest
from hypothesis import strategies as st
from keras import ops

from keras_attention.layers import MultiHeadAttention
from tests.testing import check_layer
from tests.testing import compiled
from tests.testing import gradients

rng = np.random.default_rng(0)


def normal(*shape):
    return rng.normal(size=shape).astype("float32")


def pair(**kwargs):
    """A keras MHA and ours with the same weights."""
    theirs = keras.layers.MultiHeadAttention(num_heads=3, key_dim=4, **kwargs)
    ours = MultiHeadAttention(num_heads=3, key_dim=4, **kwargs)
    return theirs, ours


def assert_parity(
    theirs, ours, args, ours_kwargs, theirs_kwargs=None, theirs_args=None
):
    """Outputs and scores agree on every query that sees at least one key."""
    theirs_kwargs = ours_kwargs if theirs_kwargs is None else theirs_kwargs
    ref, ref_w = theirs(
        *(theirs_args or args), return_attention_scores=True, **theirs_kwargs
    )
    ours(*args, **ours_kwargs)
    ours.set_weights(theirs.get_weights())
    out, w = ours(*args, return_attention_scores=True, **ours_kwargs)
    out, w = np.asarray(out), np.asarray(w)
    # keras spreads uniform weights over a query whose keys are all masked;
    # ours gives it zero weights. Compare the queries that see a key.
    visible = w.sum(-1) > 0.5  # (B, H, Tq)
    np.testing.assert_allclose(w.sum(-1)[visible], 1.0, atol=1e-5)
    np.testing.assert_array_equal(w[~visible], 0.0)
    np.testing.assert_allclose(
        w[visible], np.asarray(ref_w)[visible], atol=1e-5
    )
    rows = visible.all(axis=1)  # (B, Tq)
    np.testing.assert_allclose(out[rows], np.asarray(ref)[rows], atol=1e-5)
    return out, w


QUERY = normal(2, 5, 6)
VALUE = normal(2, 7, 8)
KEY = normal(2, 7, 3)
VALUE_MASK = np.array([[1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0]], bool)
KEY_MASK = np.array([[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0]], bool)
ATTENTION_MASK = rng.random((2, 5, 7)) > 0.3


@pytest.mark.parametrize(
    "call_kwargs",
    [
        {},
        {"use_causal_mask": True},
        {"value_mask": VALUE_MASK},
        {"value_mask": VALUE_MASK, "key_mask": KEY_MASK},
        {"attention_mask": ATTENTION_MASK},
        {"attention_mask": ATTENTION_MASK, "use_causal_mask": True},
        {"attention_mask": ATTENTION_MASK[:, None].repeat(3, 1)},  # per head
    ],
    ids=[
        "none",
        "causal",
        "value",
        "value_key",
        "attention",
        "attn_causal",
        "per_head",
    ],
)
def test_parity_with_keras_masks(call_kwargs):
    theirs, ours = pair()
    assert_parity(theirs, ours, (QUERY, VALUE, KEY), call_kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"value_dim": 3, "output_shape": (2, 3)},
        {"use_bias": False, "dropout": 0.1},
        {"use_gate": True},
        {"sliding_window": 2},
    ],
)
def test_parity_with_keras_options(kwargs):
    theirs, ours = pair(**kwargs)
    assert_parity(theirs, ours, (QUERY, VALUE), {"use_causal_mask": True})
    assert [v.shape for v in ours.weights] == [v.shape for v in theirs.weights]


def test_explicit_query_mask_equals_keras_attention_mask():
    # keras reads only the query's Keras mask; we also honour `query_mask`.
    query_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    theirs, ours = pair()
    _, w = assert_parity(
        theirs,
        ours,
        (QUERY, VALUE),
        {"query_mask": query_mask},
        {"attention_mask": query_mask[:, :, None].repeat(7, -1)},
    )
    np.testing.assert_array_equal(w[0, :, 3:], 0.0)


def test_parity_with_keras_masks_from_embedding():
    tokens = np.array([[5, 2, 7, 0, 0], [3, 0, 0, 0, 0]])
    embedding = keras.layers.Embedding(10, 6, mask_zero=True)
    x = embedding(tokens)  # carries a Keras mask
    y = embedding(tokens)  # keras's MHA deletes the mask of its inputs
    theirs, ours = pair()
    out, w = assert_parity(
        theirs, ours, (x, x), {"use_causal_mask": True}, theirs_args=(y, y)
    )
    np.testing.assert_array_equal(w[0, :, 3:], 0.0)
    # In a functional model the query's mask flows to the output.
    inputs = keras.Input((None,), dtype="int32")
    h = embedding(inputs)
    model = keras.Model(inputs, ours(h, h, use_causal_mask=True))
    np.testing.assert_allclose(model(tokens)[0, :3], out[0, :3], atol=1e-5)
    assert model.outputs[0]._keras_mask is not None


@pytest.mark.parametrize(
    "attention_axes, mask_shape",
    [(None, (2, 3, 4, 3, 4)), ((2,), (2, 3, 4, 4)), ((1,), (2, 4, 3, 3))],
)
def test_parity_with_keras_attention_axes(attention_axes, mask_shape):
    x = normal(2, 3, 4, 6)
    mask = rng.random(mask_shape) > 0.3
    theirs, ours = pair(attention_axes=attention_axes)
    expected = theirs(x, x, attention_mask=mask, return_attention_scores=True)
    ours(x, x)
    ours.set_weights(theirs.get_weights())
    actual = ours(x, x, attention_mask=mask, return_attention_scores=True)
    for a, b in zip(actual, expected):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_all_masked_query_gets_zero_weights_and_bias_output():
    ours = MultiHeadAttention(num_heads=2, key_dim=4)
    mask = np.zeros((2, 5, 7), bool)
    mask[0] = True
    out, w = ours(
        QUERY, VALUE, attention_mask=mask, return_attention_scores=True
    )
    np.testing.assert_array_equal(np.asarray(w)[1], 0.0)
    bias = np.asarray(ours.output_dense.bias)
    np.testing.assert_allclose(
        np.asarray(out)[1], np.broadcast_to(bias, (5, 6))
    )
    assert np.isfinite(np.asarray(out)).all()


def test_grouped_query_shapes_and_errors():
    layer = MultiHeadAttention(num_heads=6, key_dim=4, num_key_value_heads=2)
    out, w = layer(QUERY, VALUE, return_attention_scores=True)
    assert out.shape == (2, 5, 6) and w.shape == (2, 6, 5, 7)
    assert layer.key_dense.kernel.shape == (8, 2, 4)
    assert layer.query_dense.kernel.shape == (6, 6, 4)
    with pytest.raises(ValueError, match="num_key_value_heads=4"):
        MultiHeadAttention(num_heads=6, key_dim=4, num_key_value_heads=4)
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(num_heads=0, key_dim=4)


def test_grouped_query_equals_multi_head_with_repeated_kv_heads():
    gqa = MultiHeadAttention(num_heads=6, key_dim=4, num_key_value_heads=2)
    mha = MultiHeadAttention(num_heads=6, key_dim=4)
    gqa(QUERY, VALUE), mha(QUERY, VALUE)
    weights = []
    for w in gqa.get_weights():  # key/value kernels (d, 2, D), biases (2, D)
        if w.shape[-2:-1] == (2,) or w.shape[:1] == (2,):
            w = np.repeat(w, 3, axis=w.shape.index(2))
        weights.append(w)
    mha.set_weights(weights)
    np.testing.assert_allclose(
        gqa(QUERY, VALUE, use_causal_mask=True),
        mha(QUERY, VALUE, use_causal_mask=True),
        atol=1e-5,
    )


CHUNK_CASES = [
    {"use_causal_mask": True},
    {"value_mask": VALUE_MASK, "query_mask": np.array([[1, 1, 1, 0, 0]] * 2)},
    {"attention_mask": ATTENTION_MASK, "value_mask": VALUE_MASK},
]


@pytest.mark.parametrize("call_kwargs", CHUNK_CASES)
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_key_value_heads": 1, "rotary_max_wavelength": 100},
        {"score": "general", "sliding_window": 3},
    ],
)
def test_chunked_equals_unchunked_forward_and_gradient(kwargs, call_kwargs):
    plain = MultiHeadAttention(num_heads=3, key_dim=4, **kwargs)
    chunked = MultiHeadAttention(num_heads=3, key_dim=4, chunk_size=3, **kwargs)
    plain(QUERY, VALUE), chunked(QUERY, VALUE)
    chunked.set_weights(plain.get_weights())
    results = []
    for layer in (plain, chunked):

        def loss(query, value, layer=layer):
            out = layer(query, value, **call_kwargs)
            return ops.sum(ops.sin(out) * out)

        out = layer(QUERY, VALUE, **call_kwargs)
        grads = gradients(loss, layer.weights, [QUERY, VALUE])
        results.append((np.asarray(out), *grads))
    for expected, actual in zip(*results):
        np.testing.assert_allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [2, 3])
@pytest.mark.parametrize("kwargs", [{}, {"num_key_value_heads": 1}])
def test_chunked_causal_self_attention_skipping_blocks(chunk_size, kwargs):
    # Long enough for the causal query blocks (key blocks above the
    # diagonal are skipped), with padding; forward and gradients.
    plain = MultiHeadAttention(num_heads=2, key_dim=4, **kwargs)
    chunked = MultiHeadAttention(
        num_heads=2, key_dim=4, chunk_size=chunk_size, **kwargs
    )
    # Own seeds: inputs and weights must not depend on the tests run before.
    keras.utils.set_random_seed(1)
    local = np.random.default_rng(1)
    x = local.normal(size=(2, 29, 6)).astype("float32")
    mask = np.arange(29)[None] < np.array([[29], [20]])
    plain(x, x), chunked(x, x)
    chunked.set_weights(plain.get_weights())
    results = []
    for layer in (plain, chunked):

        def call(x, layer=layer):
            return layer(
                x, x, use_causal_mask=True, query_mask=mask, value_mask=mask
            )

        grads = gradients(
            lambda x, call=call: ops.sum(ops.sin(call(x)) * call(x)),
            layer.weights,
            [x],
        )
        results.append((np.asarray(call(x)), *grads))
    for expected, actual in zip(*results):
        np.testing.assert_allclose(actual, expected, atol=1e-5)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
    query_length=st.integers(1, 9),
    key_length=st.integers(1, 9),
    chunk_size=st.integers(1, 10),
    causal=st.booleans(),
)
def test_chunked_equals_unchunked_any_length(
    query_length, key_length, chunk_size, causal
):
    plain = MultiHeadAttention(num_heads=2, key_dim=4)
    chunked = MultiHeadAttention(num_heads=2, key_dim=4, chunk_size=chunk_size)
    query, value = normal(2, query_length, 6), normal(2, key_length, 6)
    value_mask = rng.random((2, key_length)) > 0.3
    kwargs = {"use_causal_mask": causal, "value_mask": value_mask}
    expected = plain(query, value, **kwargs)
    chunked(query, value)
    chunked.set_weights(plain.get_weights())
    np.testing.assert_allclose(
        chunked(query, value, **kwargs), expected, atol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_key_value_heads": 1, "rotary_max_wavelength": 100},
        {"chunk_size": 2, "num_key_value_heads": 3, "sliding_window": 3},
    ],
)
def test_cache_reproduces_causal_forward_token_by_token(kwargs):
    layer = MultiHeadAttention(num_heads=3, key_dim=4, **kwargs)
    x = normal(2, 6, 8)
    expected = layer(x, x, use_causal_mask=True)
    heads = kwargs.get("num_key_value_heads", 3)
    cache = np.zeros((2, 2, 6, heads, 4), "float32")
    # Prefill two tokens, then decode one at a time.
    out, cache = layer(
        x[:, :2],
        x[:, :2],
        use_causal_mask=True,
        cache=cache,
        cache_update_index=0,
    )
    outputs = [out]
    step = compiled(
        lambda x_t, cache, i: layer(
            x_t, x_t, use_causal_mask=True, cache=cache, cache_update_index=i
        )
    )
    for i in range(2, 6):
        out, cache = step(x[:, i : i + 1], cache, ops.convert_to_tensor(i))
        outputs.append(out)
    np.testing.assert_allclose(
        np.concatenate(outputs, axis=1), expected, atol=1e-5
    )
    assert cache.shape == (2, 2, 6, heads, 4)


def test_cache_without_index_is_precomputed_cross_attention():
    layer = MultiHeadAttention(num_heads=3, key_dim=4)
    expected = layer(QUERY, VALUE, value_mask=VALUE_MASK)
    keys = layer.key_dense(VALUE)  # (B, Tk, H, D)
    cache = np.stack([keys, layer.value_dense(VALUE)], axis=1)
    out, w, same = layer(
        QUERY,
        VALUE,
        value_mask=VALUE_MASK,
        cache=cache,
        return_attention_scores=True,
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert w.shape == (2, 3, 5, 7)
    np.testing.assert_array_equal(same, cache)


def test_cache_errors():
    layer = MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3)
    with pytest.raises(ValueError, match="cache_update_index"):
        layer(QUERY, QUERY, cache_update_index=0)
    with pytest.raises(ValueError, match="value_dim"):
        layer(
            QUERY,
            QUERY,
            cache=np.zeros((2, 2, 5, 2, 4), "float32"),
            cache_update_index=0,
        )


def test_rotary_scores_depend_on_relative_position():
    layer = MultiHeadAttention(num_heads=1, key_dim=4, rotary_max_wavelength=50)
    token = normal(1, 1, 6)
    x = np.repeat(token, 6, axis=1)  # same token at every position
    _, w = layer(x, x, return_attention_scores=True)
    w = np.asarray(w)[0, 0]
    # Same relative offset -> same weight ratio, e.g. w[i, i] / w[i, i - 1].
    ratios = (
        w[np.arange(1, 6), np.arange(1, 6)]
        / w[np.arange(1, 6), np.arange(0, 5)]
    )
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_heads": 2, "key_dim": 4},
        {
            "num_heads": 4,
            "key_dim": 4,
            "num_key_value_heads": 2,
            "rotary_max_wavelength": 100,
            "chunk_size": 3,
            "score": "cosine",
        },
    ],
)
def test_check_layer(kwargs):
    check_layer(
        MultiHeadAttention,
        kwargs,
        [QUERY, VALUE],
        (2, 5, 6),
        call_kwargs={"use_causal_mask": True},
        atol=1e-5,
    )


def test_symbolic_call_returns_scores_and_cache_specs():
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    query, value = keras.Input((5, 6)), keras.Input((None, 8))
    out, w = layer(query, value, return_attention_scores=True)
    assert out.shape == (None, 5, 6) and w.shape == (None, 2, 5, None)
    cache = keras.Input((2, 9, 2, 4))
    out, cache_out = MultiHeadAttention(num_heads=2, key_dim=4)(
        query, query, cache=cache, cache_update_index=0
    )
    assert cache_out.shape == (None, 2, 9, 2, 4)


def test_functional_model_fits():
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(inputs)
    x = MultiHeadAttention(
        num_heads=2,
        key_dim=4,
        chunk_size=3,
        num_key_value_heads=1,
        rotary_max_wavelength=100,
    )(x, x, use_causal_mask=True)
    model = keras.Model(inputs, keras.layers.Dense(20)(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(True))
    tokens = rng.integers(1, 20, size=(16, 7))
    tokens[:, 5:] = 0
    history = model.fit(tokens, tokens, epochs=3, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


@pytest.mark.parametrize("kwargs", [{}, {"num_key_value_heads": 1}])
def test_chunked_per_head_mask_equals_dense(kwargs):
    # A per-head (B, H, Tq, Tk) mask no longer forces the dense path.
    plain = MultiHeadAttention(num_heads=3, key_dim=4, **kwargs)
    chunked = MultiHeadAttention(num_heads=3, key_dim=4, chunk_size=2, **kwargs)
    mask = ATTENTION_MASK[:, None].repeat(3, 1)
    mask[:, 1] = ~mask[:, 1]  # the heads see different keys
    expected = plain(QUERY, VALUE, attention_mask=mask)
    chunked(QUERY, VALUE)
    chunked.set_weights(plain.get_weights())
    np.testing.assert_allclose(
        chunked(QUERY, VALUE, attention_mask=mask), expected, atol=1e-5
    )


def test_chunked_cache_prefill_at_a_tensor_index_equals_dense():
    plain = MultiHeadAttention(num_heads=2, key_dim=4)
    chunked = MultiHeadAttention(num_heads=2, key_dim=4, chunk_size=3)
    x = normal(2, 8, 6)
    plain(x, x), chunked(x, x)
    chunked.set_weights(plain.get_weights())
    outputs = []
    for layer in (plain, chunked):
        cache = np.zeros((2, 2, 8, 2, 4), "float32")
        _, cache = layer(
            x[:, :3],
            x[:, :3],
            use_causal_mask=True,
            cache=cache,
            cache_update_index=0,
        )
        out, _ = layer(
            x[:, 3:],
            x[:, 3:],
            use_causal_mask=True,
            cache=cache,
            cache_update_index=ops.convert_to_tensor(3),
        )
        outputs.append(np.asarray(out))
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5)
    np.testing.assert_allclose(
        outputs[0], plain(x, x, use_causal_mask=True)[:, 3:], atol=1e-5
    )


@pytest.mark.parametrize(
    "args, name",
    [
        ((normal(2, 5, 7), normal(2, 7, 8)), "query"),
        ((normal(2, 5, 6), normal(2, 7, 5)), "value"),
        ((normal(2, 5, 6), normal(2, 7, 8), normal(2, 7, 4)), "key"),
    ],
)
def test_feature_size_other_than_built_is_refused_naming_it(args, name):
    layer = MultiHeadAttention(num_heads=3, key_dim=4)
    layer(QUERY, VALUE, KEY)  # built on (6, 8, 3) features
    with pytest.raises(ValueError, match=f"`{name}`"):
        layer(*args)
