"""Score and mask modifiers: each equals a dense reference that spells the
bias or mask out, in the dense, chunked and cached paths, with gradients."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention import mods
from keras_attention.layers import MultiHeadAttention
from tests.testing import gradients

rng = np.random.default_rng(5)
B, T, D, H = 2, 11, 8, 4
X = rng.normal(size=(B, T, D)).astype("float32")
SEGMENTS = np.array([[0] * 4 + [1] * 5 + [2] * 2, [0] * 7 + [1] * 4])


def reference_bias(mod, heads=H, length=T):
    """The modifier's bias spelled out: `(1, H, T, T)`."""
    q, k, h = (np.asarray(x) for x in _positions(length, heads))
    scores = np.zeros((1, heads, length, length), "float32")
    out = mod(scores, q, k, h, num_heads=heads)
    return np.asarray(keras.ops.convert_to_numpy(out))


def reference_mask(mod, heads=H, length=T, segment_ids=None):
    q, k, h = _positions(length, heads)
    context = {} if segment_ids is None else {"segment_ids": segment_ids}
    mask = mod(q, k, h, num_heads=heads, **context)
    return np.broadcast_to(
        np.asarray(keras.ops.convert_to_numpy(mask)),
        (B if segment_ids is not None else 1, heads, length, length),
    )


def _positions(length, heads):
    return (
        np.arange(length).reshape(1, 1, -1, 1),
        np.arange(length).reshape(1, 1, 1, -1),
        np.arange(heads).reshape(1, -1, 1, 1),
    )


SCORE_MODS = {
    "alibi": lambda: mods.ALiBi(),
    "t5": lambda: mods.RelativePositionBias(num_buckets=8, max_distance=16),
    "t5_causal": lambda: mods.RelativePositionBias(
        num_buckets=8, max_distance=16, bidirectional=False
    ),
    "softcap": lambda: mods.SoftCap(cap=2.0),
}
MASK_MODS = {
    "causal": lambda: mods.Causal(),
    "window": lambda: mods.SlidingWindow(3),
    "causal_window": lambda: mods.Causal() & mods.SlidingWindow(3),
    "prefix": lambda: mods.PrefixLM(4),
    "document": lambda: mods.DocumentMask(),
    "document_causal": lambda: mods.DocumentMask() & mods.Causal(),
    "window_or_prefix": lambda: mods.SlidingWindow(2) | mods.PrefixLM(3),
}


def pair(chunk_size=None, **kwargs):
    """A layer with the modifier and a plain one with the same weights."""
    keras.utils.set_random_seed(0)
    modified = MultiHeadAttention(H, 4, chunk_size=chunk_size, **kwargs)
    plain = MultiHeadAttention(H, 4)
    modified(X, X, segment_ids=SEGMENTS), plain(X, X)
    for target, source in zip(
        (plain.query_dense, plain.key_dense, plain.value_dense,
         plain.output_dense),
        (modified.query_dense, modified.key_dense, modified.value_dense,
         modified.output_dense),
    ):  # fmt: skip
        target.set_weights(source.get_weights())
    return modified, plain


def set_random_t5_weights(layer):
    mod = layer.score_mod
    if isinstance(mod, mods.RelativePositionBias):
        mod.embeddings.assign(rng.normal(size=mod.embeddings.shape))


@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("name", ["alibi", "t5", "t5_causal"])
def test_additive_score_mod_equals_its_bias_spelled_out(name, chunk_size):
    modified, plain = pair(chunk_size, score_mod=SCORE_MODS[name]())
    set_random_t5_weights(modified)
    bias = reference_bias(modified.score_mod)
    np.testing.assert_allclose(
        modified(X, X, use_causal_mask=True),
        plain(X, X, use_causal_mask=True, attention_bias=bias),
        atol=1e-5,
    )


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_softcap_equals_numpy(chunk_size):
    modified, plain = pair(chunk_size, score_mod=mods.SoftCap(2.0))
    out = modified(X, X)
    q = np.asarray(plain.query_dense(X)) / math.sqrt(4)
    k, v = np.asarray(plain.key_dense(X)), np.asarray(plain.value_dense(X))
    logits = 2.0 * np.tanh(np.einsum("bqhd,bkhd->bhqk", q, k) / 2.0)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    heads = np.einsum("bhqk,bkhd->bqhd", weights, v)
    expected = np.asarray(plain.output_dense(heads))
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, 2, 3])
@pytest.mark.parametrize("name", sorted(MASK_MODS))
def test_mask_mod_equals_its_mask_spelled_out(name, chunk_size):
    mod = MASK_MODS[name]()
    modified, plain = pair(chunk_size, mask_mod=mod)
    segments = SEGMENTS if "document" in name else None
    mask = reference_mask(mod, segment_ids=segments)
    call = {} if segments is None else {"segment_ids": segments}
    np.testing.assert_allclose(
        modified(X, X, **call),
        plain(X, X, attention_mask=np.broadcast_to(mask, (B, H, T, T))),
        atol=1e-5,
    )


@pytest.mark.parametrize("score_name", ["alibi", "t5", "softcap"])
def test_chunked_equals_dense_outputs_and_gradients(score_name):
    layers = []
    for chunk_size in (None, 3):
        keras.utils.set_random_seed(0)
        layer = MultiHeadAttention(
            H, 4, chunk_size=chunk_size,
            score_mod=SCORE_MODS[score_name](),
            mask_mod=mods.DocumentMask() & mods.Causal(),
        )  # fmt: skip
        layer(X, X, segment_ids=SEGMENTS)
        layers.append(layer)
    set_random_t5_weights(layers[0])
    layers[1].set_weights(layers[0].get_weights())
    results = []
    for layer in layers:

        def loss(x, layer=layer):
            out = layer(x, x, segment_ids=SEGMENTS)
            return ops.sum(ops.sin(out) * out)

        out = layer(X, X, segment_ids=SEGMENTS)
        results.append(
            [np.asarray(out), *gradients(loss, layer.trainable_weights, [X])]
        )
    for expected, actual in zip(*results):
        np.testing.assert_allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("score_name", ["alibi", "t5_causal", "softcap"])
def test_cached_decoding_equals_full_sequence(score_name, chunk_size):
    keras.utils.set_random_seed(0)
    layer = MultiHeadAttention(
        H, 4, chunk_size=chunk_size, score_mod=SCORE_MODS[score_name](),
        mask_mod=mods.SlidingWindow(4),
    )  # fmt: skip
    layer(X, X, use_causal_mask=True)  # build
    set_random_t5_weights(layer)
    expected = np.asarray(layer(X, X, use_causal_mask=True))
    cache = np.zeros((B, 2, T, H, 4), "float32")
    outputs = []
    for i in range(T):
        out, cache = layer(
            X[:, i : i + 1], X[:, i : i + 1], use_causal_mask=True,
            cache=cache, cache_update_index=i,
        )  # fmt: skip
        outputs.append(np.asarray(out))
    np.testing.assert_allclose(
        np.concatenate(outputs, axis=1), expected, atol=1e-5
    )


def test_attention_bias_gets_its_gradient_in_the_chunked_path():
    bias = rng.normal(size=(1, H, T, T)).astype("float32")
    grads = []
    for chunk_size in (None, 3):
        keras.utils.set_random_seed(0)
        layer = MultiHeadAttention(H, 4, chunk_size=chunk_size)
        layer(X, X)
        grads.append(
            gradients(
                lambda b, layer=layer: ops.sum(
                    ops.sin(layer(X, X, attention_bias=b))
                ),
                inputs=[bias],
            )[0]
        )
    np.testing.assert_allclose(grads[1], grads[0], atol=1e-5)
    assert np.abs(grads[0]).sum() > 0


# --- The built-ins' own definitions ---------------------------------------


def t5_bucket(relative_position, bidirectional, num_buckets, max_distance):
    """T5's published bucketing (Mesh TensorFlow), in NumPy."""
    ret = 0
    n = -relative_position
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(np.int64) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    val_if_large = max_exact + (
        np.log(np.maximum(n, 1) / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).astype(np.int64)
    val_if_large = np.minimum(val_if_large, num_buckets - 1)
    return ret + np.where(is_small, n, val_if_large)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets, max_distance", [(32, 128), (8, 20)])
def test_t5_buckets_match_the_published_formula(
    bidirectional, num_buckets, max_distance
):
    relative = np.arange(-300, 301)
    ours = mods.relative_position_bucket(
        relative, bidirectional, num_buckets, max_distance
    )
    np.testing.assert_array_equal(
        np.asarray(ours),
        t5_bucket(relative, bidirectional, num_buckets, max_distance),
    )


@pytest.mark.parametrize("heads", [4, 8, 6])
def test_alibi_weights_equal_keras_hub_under_a_causal_mask(heads):
    import keras_hub

    scores = rng.normal(size=(1, heads, T, T)).astype("float32")
    causal = np.tril(np.ones((T, T), bool))

    def softmax(logits):
        logits = np.where(causal, logits, -np.inf)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    theirs = np.asarray(keras_hub.layers.AlibiBias()(scores))
    ours = scores + reference_bias(mods.ALiBi(), heads=heads)
    np.testing.assert_allclose(softmax(ours), softmax(theirs), atol=1e-6)
    np.testing.assert_allclose(
        mods.alibi_slopes(8), [2 ** (-(i + 1)) for i in range(8)]
    )


@pytest.mark.parametrize(
    "mod",
    [
        mods.Causal(),
        mods.SlidingWindow(5),
        mods.PrefixLM(3),
        mods.DocumentMask(),
        mods.Causal() & (mods.SlidingWindow(2) | mods.PrefixLM(1)),
    ],
    ids=repr,
)
def test_mask_mods_serialize(mod):
    config = keras.saving.serialize_keras_object(mod)
    restored = keras.saving.deserialize_keras_object(config)
    assert repr(restored) == repr(mod)


def test_key_range_never_hides_a_visible_key():
    for mod in (
        mods.Causal(),
        mods.SlidingWindow(3),
        mods.PrefixLM(4),
        mods.Causal() & mods.SlidingWindow(3),
        mods.SlidingWindow(2) | mods.PrefixLM(3),
    ):
        mask = reference_mask(mod, heads=1, length=20)[0, 0]
        for start in range(0, 20, 3):
            low, high = mod.key_range(start, start + 3)
            visible = np.flatnonzero(mask[start : start + 3].any(0))
            assert visible.min() >= low and visible.max() < high, mod


def test_lambdas_and_bad_modifiers_are_refused():
    with pytest.raises(TypeError, match="score_mod"):
        MultiHeadAttention(2, 4, score_mod=lambda s, q, k, h: s)
    with pytest.raises(TypeError, match="mask_mod"):
        MultiHeadAttention(2, 4, mask_mod=mods.ALiBi())
    with pytest.raises(ValueError, match="window"):
        mods.SlidingWindow(0)
    with pytest.raises(ValueError, match="segment_ids"):
        MultiHeadAttention(2, 4, mask_mod=mods.DocumentMask())(X, X)


def test_layer_with_modifiers_saves_and_loads(tmp_path):
    x = keras.Input((None, D))
    segments = keras.Input((None,), dtype="int32")
    out = MultiHeadAttention(
        H, 4, chunk_size=3, score_mod=mods.RelativePositionBias(8, 16),
        mask_mod=mods.DocumentMask() & mods.Causal(),
    )(x, x, segment_ids=segments)  # fmt: skip
    model = keras.Model([x, segments], out)
    expected = np.asarray(model([X, SEGMENTS]))
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored([X, SEGMENTS]), expected, atol=1e-6)


def test_single_head_attention_takes_modifiers():
    from keras_attention.layers import Attention

    q = rng.normal(size=(B, T, D)).astype("float32")
    plain = Attention(score="dot")
    modified = Attention(
        score="dot", score_mod=mods.ALiBi(num_heads=1), mask_mod=mods.Causal()
    )
    bias = reference_bias(mods.ALiBi(num_heads=1), heads=1)[:, 0]  # (1, T, T)
    np.testing.assert_allclose(
        modified(q, q),
        plain(q, q, use_causal_mask=True, attention_bias=bias),
        atol=1e-5,
    )


# === Custom modifiers with DESIGN's plain signatures ===


@keras.saving.register_keras_serializable(package="tests")
class EvenKeys(mods.MaskMod):
    """DESIGN's signature, no context: keys at even positions only."""

    def call(self, q_idx, kv_idx, head):
        return kv_idx % 2 == 0


@keras.saving.register_keras_serializable(package="tests")
class SameSegmentOrSelf(mods.MaskMod):
    """Takes one context keyword by name (and not `num_heads`)."""

    def call(self, q_idx, kv_idx, head, segment_ids=None):
        same = mods.DocumentMask()(q_idx, kv_idx, head, segment_ids=segment_ids)
        return ops.logical_or(same, q_idx == kv_idx)


@keras.saving.register_keras_serializable(package="tests")
class HeadDistance(mods.ScoreMod):
    """DESIGN's score signature: `call(scores, q_idx, kv_idx, head)`."""

    additive = False  # a `call` of its own: no blockwise gradient

    def call(self, scores, q_idx, kv_idx, head):
        distance = ops.cast(ops.abs(q_idx - kv_idx), scores.dtype)
        return scores - 0.1 * (ops.cast(head, scores.dtype) + 1) * distance


@keras.saving.register_keras_serializable(package="tests")
class HeadDistanceBias(mods.ScoreMod):
    """The same as an additive `bias(q_idx, kv_idx, head)`."""

    def bias(self, q_idx, kv_idx, head):
        distance = ops.cast(ops.abs(q_idx - kv_idx), "float32")
        return -0.1 * (ops.cast(head, "float32") + 1) * distance


def head_distance_bias():
    q, k, h = _positions(T, H)
    return (-0.1 * (h + 1) * np.abs(q - k)).astype("float32")  # (1, H, T, T)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_custom_mask_mod_without_context_keywords(chunk_size):
    modified, plain = pair(chunk_size, mask_mod=EvenKeys())
    mask = np.broadcast_to(np.arange(T) % 2 == 0, (B, T, T))
    np.testing.assert_allclose(
        modified(X, X, segment_ids=SEGMENTS),  # context it does not take
        plain(X, X, attention_mask=mask),
        atol=1e-5,
    )


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_custom_mask_mod_taking_segment_ids_by_name(chunk_size):
    modified, plain = pair(chunk_size, mask_mod=SameSegmentOrSelf())
    same = SEGMENTS[:, :, None] == SEGMENTS[:, None, :]  # (B, T, T)
    mask = same | np.eye(T, dtype=bool)
    np.testing.assert_allclose(
        modified(X, X, segment_ids=SEGMENTS),
        plain(X, X, attention_mask=mask),
        atol=1e-5,
    )


@pytest.mark.parametrize("mod_class", [HeadDistance, HeadDistanceBias])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_custom_score_mods_with_design_signatures(mod_class, chunk_size):
    modified, plain = pair(chunk_size, score_mod=mod_class())
    np.testing.assert_allclose(
        modified(X, X, use_causal_mask=True),
        plain(X, X, use_causal_mask=True, attention_bias=head_distance_bias()),
        atol=1e-5,
    )
    # Gradients too (the chunked path's blockwise or looped gradient).
    bias = head_distance_bias()
    got, want = (
        gradients(
            lambda x, layer=layer, kw=kw: ops.sum(
                ops.square(layer(x, x, use_causal_mask=True, **kw))
            ),
            inputs=[X],
        )[0]
        for layer, kw in ((modified, {}), (plain, {"attention_bias": bias}))
    )
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_custom_modifiers_round_trip_in_a_saved_layer(tmp_path):
    layer = MultiHeadAttention(
        H, 4, mask_mod=EvenKeys(), score_mod=HeadDistance()
    )
    inputs = keras.Input((T, D))
    model = keras.Model(inputs, layer(inputs, inputs))
    path = str(tmp_path / "custom.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(X), model(X), atol=1e-6)
