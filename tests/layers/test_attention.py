import os
import tempfile

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_attention import Attention
from keras_attention import AttentionPooling
from tests.testing import check_layer

rng = np.random.default_rng(2)

SCORES = [
    "dot",
    "scaled_dot",
    "general",
    "additive",
    "cosine",
    "distance",
    "gaussian",
    {
        "module": "keras_attention.scores",
        "class_name": "Location",
        "config": {"max_length": 8},
        "registered_name": "keras_attention>Location",
    },
]


def make(*shape):
    return rng.normal(size=shape).astype("float32")


def score_id(score):
    return score if isinstance(score, str) else score["class_name"]


def test_attention_is_the_three_step_recipe():
    q, k, v = make(2, 3, 4), make(2, 5, 4), make(2, 5, 6)
    out, w = Attention(score="dot")(q, v, key=k, return_attention_scores=True)
    e = q @ k.swapaxes(-1, -2)
    alpha = np.exp(e - e.max(-1, keepdims=True))
    alpha /= alpha.sum(-1, keepdims=True)
    np.testing.assert_allclose(w, alpha, atol=1e-5)
    np.testing.assert_allclose(out, alpha @ v, atol=1e-5)


def test_temperature_divides_scores():
    q, v = make(2, 3, 4), make(2, 5, 4)
    _, w = Attention("dot", temperature=2.0)(q, v, return_attention_scores=True)
    e = q @ v.swapaxes(-1, -2) / 2.0
    alpha = np.exp(e - e.max(-1, keepdims=True))
    np.testing.assert_allclose(
        w, alpha / alpha.sum(-1, keepdims=True), atol=1e-5
    )


@pytest.mark.parametrize("use_masks", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_dot_matches_keras_attention(use_masks, causal):
    q, v, k = make(2, 4, 3), make(2, 4, 3), make(2, 4, 3)
    q_mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    v_mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    reference = keras.layers.Attention(score_mode="dot")
    expected, expected_w = reference(
        [q, v, k],
        mask=[q_mask, v_mask] if use_masks else None,
        use_causal_mask=causal,
        return_attention_scores=True,
    )
    ours, ours_w = Attention(score="dot")(
        q,
        v,
        key=k,
        query_mask=q_mask if use_masks else None,
        value_mask=v_mask if use_masks else None,
        use_causal_mask=causal,
        return_attention_scores=True,
    )
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    # keras keeps weights of padded queries; ours are zero (DESIGN.md).
    rows = q_mask if use_masks else np.ones_like(q_mask)
    np.testing.assert_allclose(
        np.asarray(ours_w)[rows], np.asarray(expected_w)[rows], atol=1e-5
    )


@pytest.mark.parametrize("score", SCORES, ids=score_id)
def test_masked_keys_get_zero_weight(score):
    q, v = make(2, 3, 4), make(2, 5, 4)
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], bool)  # row 2: none
    out, w = Attention(score=score)(
        q, v, value_mask=mask, return_attention_scores=True
    )
    w, out = np.asarray(w), np.asarray(out)  # (B, Tq, Tk)
    np.testing.assert_array_equal(w[0, :, 3:], 0.0)
    np.testing.assert_allclose(w.sum(-1), [[1] * 3, [0] * 3], atol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize("score", SCORES, ids=score_id)
def test_padded_value_content_never_changes_output(score):
    q, v = make(2, 3, 4), make(2, 5, 4)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], bool)
    layer = Attention(score=score)
    before = np.asarray(layer(q, v, value_mask=mask))
    v2 = np.where(mask[..., None], v, 100.0 * make(2, 5, 4))
    after = np.asarray(layer(q, v2, value_mask=mask))
    np.testing.assert_allclose(before, after, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    tq=st.integers(1, 5),
    tk=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    score=st.sampled_from(["dot", "general", "additive", "cosine"]),
)
def test_weights_sum_to_one_over_unmasked_keys(tq, tk, seed, score):
    r = np.random.default_rng(seed)
    q = r.normal(size=(2, tq, 4)).astype("float32")
    v = r.normal(size=(2, tk, 4)).astype("float32")
    mask = r.random((2, tk)) > 0.4
    _, w = Attention(score=score)(
        q, v, value_mask=mask, return_attention_scores=True
    )
    w = np.asarray(w)
    assert (w[np.broadcast_to(~mask[:, None], w.shape)] == 0.0).all()
    expected = np.where(mask.any(-1), 1.0, 0.0)[:, None]
    np.testing.assert_allclose(
        w.sum(-1), np.broadcast_to(expected, (2, tq)), atol=1e-5
    )


@settings(max_examples=20, deadline=None)
@given(t=st.integers(2, 6), cut=st.integers(1, 5), seed=st.integers(0, 999))
def test_causal_output_independent_of_future(t, cut, seed):
    cut = min(cut, t - 1)
    r = np.random.default_rng(seed)
    x = r.normal(size=(1, t, 4)).astype("float32")
    changed = x.copy()
    changed[:, cut:] = r.normal(size=(1, t - cut, 4))
    layer = Attention(score="general")
    a = np.asarray(layer(x, x, use_causal_mask=True))
    b = np.asarray(layer(changed, changed, use_causal_mask=True))
    np.testing.assert_allclose(a[:, :cut], b[:, :cut], atol=1e-5)


def test_attention_mask_and_masks_combine():
    q, v = make(2, 3, 4), make(2, 4, 4)
    explicit = rng.random((2, 3, 4)) > 0.3
    v_mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    _, w = Attention("dot")(
        q,
        v,
        value_mask=v_mask,
        attention_mask=explicit,
        return_attention_scores=True,
    )
    allowed = explicit & v_mask[:, None]
    assert (np.asarray(w)[~allowed] == 0).all()


def test_keras_masks_propagate_from_embedding():
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    y = Attention(score="general")(x, x)
    pooled = AttentionPooling()(y)
    model = keras.Model(tokens, [y, pooled])
    ids = np.array([[3, 4, 5, 0, 0]])
    y1, p1 = model(ids)
    y2, p2 = model(np.array([[3, 4, 5, 0, 0, 0, 0]]))  # more padding
    np.testing.assert_allclose(np.asarray(y1)[:, :3], y2[:, :3], atol=1e-5)
    np.testing.assert_allclose(p1, p2, atol=1e-5)
    # The output carries the query's mask to the next layer.
    assert y._keras_mask is not None


@pytest.mark.parametrize("score", SCORES, ids=score_id)
def test_attention_layer_round_trips(score):
    check_layer(
        Attention,
        {"score": score, "dropout": 0.1},
        [make(2, 3, 4), make(2, 5, 4)],
        (2, 3, 4),
    )


@pytest.mark.parametrize("score", SCORES, ids=score_id)
def test_functional_model_with_each_score_saves_and_loads(score):
    q_in, v_in = keras.Input((3, 4)), keras.Input((5, 4))
    x = Attention(score=score, name="attn")(q_in, v_in)
    out = keras.layers.Dense(2)(x)
    model = keras.Model([q_in, v_in], out)
    inputs = [make(2, 3, 4), make(2, 5, 4)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model(inputs), loaded(inputs))
    assert (
        type(loaded.get_layer("attn").score).__name__
        == type(model.get_layer("attn").score).__name__
    )


@pytest.mark.parametrize("score", ["scaled_dot", "additive", "gaussian"])
def test_mixed_float16_outputs_are_finite(score):
    q = (make(2, 3, 8) * 300).astype("float16")
    v = (make(2, 6, 8) * 300).astype("float16")
    mask = np.array([[1, 1, 0, 0, 0, 0], [0] * 6], bool)
    layer = Attention(score=score, dtype="mixed_float16")
    out, w = layer(q, v, value_mask=mask, return_attention_scores=True)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert np.isfinite(np.asarray(out, "float32")).all()
    assert np.isfinite(np.asarray(w)).all()


def test_dropout_only_in_training():
    q, v = make(2, 3, 4), make(2, 5, 4)
    layer = Attention(dropout=0.5, seed=1)
    np.testing.assert_allclose(layer(q, v), layer(q, v, training=False))
    assert not np.allclose(layer(q, v, training=True), layer(q, v))


def test_attention_trains_in_a_model():
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
    x = Attention(score="additive")(x, x)
    out = keras.layers.Dense(2)(AttentionPooling()(x))
    model = keras.Model(tokens, out)
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    ids = rng.integers(1, 10, size=(64, 6))
    labels = (ids[:, 0] > 5).astype("int32")
    history = model.fit(ids, labels, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_attention_pooling_formula_and_shapes():
    x = make(2, 5, 4)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    layer = AttentionPooling(score="dot")
    out, w = layer(x, mask=mask, return_attention_scores=True)
    assert out.shape == (2, 4) and w.shape == (2, 5)
    query = np.asarray(layer.query)[0, 0]  # (D,)
    e = x @ query
    e = np.where(mask, e, -np.inf)
    alpha = np.exp(e - e.max(-1, keepdims=True))
    alpha /= alpha.sum(-1, keepdims=True)
    np.testing.assert_allclose(w, alpha, atol=1e-5)
    np.testing.assert_allclose(out, (alpha[..., None] * x).sum(1), atol=1e-5)


def test_attention_pooling_round_trips():
    check_layer(AttentionPooling, {"score": "additive"}, make(2, 5, 4), (2, 4))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"score": "nope"}, "Valid names"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": 1.0}, "dropout"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Attention(**kwargs)


def test_rank_mismatch_raises():
    with pytest.raises(ValueError, match="query.shape"):
        Attention()(make(2, 3), make(2, 5, 4))


def test_last_dim_mismatch_raises_for_dot():
    with pytest.raises(ValueError, match="same last dimension"):
        Attention("dot")(make(2, 3, 4), make(2, 5, 6))


def test_key_value_length_mismatch_raises():
    with pytest.raises(ValueError, match="key.shape"):
        Attention()(make(2, 3, 4), make(2, 5, 4), key=make(2, 6, 4))


def test_pooling_rank_mismatch_raises():
    with pytest.raises(ValueError, match="inputs.shape"):
        AttentionPooling()(make(2, 4))
