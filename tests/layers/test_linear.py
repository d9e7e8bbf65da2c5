"""`LinearAttention`: the formula in NumPy, chunks, decoding, FAVOR+."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import linear
from keras_attention.layers.linear import LinearAttention
from tests.testing import as_float32
from tests.testing import check_layer
from tests.testing import compiled
from tests.testing import gradients

rng = np.random.default_rng(7)
B, T, WIDTH, H, D = 2, 7, 8, 2, 4
MAPS = ["elu", "relu", "favor"]


def normal(*shape, scale=1.0):
    return (scale * rng.normal(size=shape)).astype("float32")


X = normal(B, T, WIDTH)
PADDING = np.ones((B, T), bool)
PADDING[0, 5:] = False  # row 0: two padded positions
PADDING[1, :1] = False  # row 1: a padded first position


def numpy_phi(x, feature_map, omega=None):
    """φ in float64: elu + 1, relu, or FAVOR+'s positive random features."""
    if feature_map == "elu":
        return np.where(x > 0, x + 1.0, np.exp(x))
    if feature_map == "relu":
        return np.maximum(x, 0.0)
    dim, count = omega.shape
    x = x * dim**-0.25
    exponent = x @ omega - 0.5 * np.sum(x**2, -1, keepdims=True)
    return np.exp(exponent) / np.sqrt(count)


def numpy_linear(layer, query, value, causal=False, query_mask=None,
                 value_mask=None, projections=None, epsilon=1e-6):  # fmt: skip
    """`o_i = Σ_j φ(q_i)·φ(k_j) v_j / (Σ_j φ(q_i)·φ(k_j) + ε)` over the
    visible keys, with `projections` (default: the layer's own sublayers),
    and the weights `(B, H, Tq, Tk)`."""
    dense = projections or (
        layer.query_dense, layer.key_dense, layer.value_dense,
        layer.output_dense,
    )  # fmt: skip
    q, k, v = (
        np.asarray(d(x), np.float64)
        for d, x in zip(dense[:3], (query, value, value))
    )  # (B, T, h, D)
    group = q.shape[2] // k.shape[2]  # query heads per key/value head
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    omega = getattr(layer, "random_features", None)
    omega = None if omega is None else np.asarray(omega, np.float64)
    phi_q = numpy_phi(q, layer.feature_map, omega)
    phi_k = numpy_phi(k, layer.feature_map, omega)
    products = np.einsum("bqhf,bkhf->bhqk", phi_q, phi_k)
    mask = np.ones(products.shape, bool)
    if causal:
        mask &= np.tril(np.ones(products.shape[-2:], bool))
    if value_mask is not None:
        mask &= value_mask[:, None, None, :]
    if query_mask is not None:
        mask &= query_mask[:, None, :, None]
    products = products * mask
    weights = products / (products.sum(-1, keepdims=True) + epsilon)
    heads = np.einsum("bhqk,bkhd->bqhd", weights, v)
    return np.asarray(dense[3](heads.astype("float32"))), weights


def make(feature_map="elu", **kwargs):
    layer = LinearAttention(H, D, feature_map=feature_map, seed=3, **kwargs)
    layer(X, X)
    return layer


def decode(layer, x, prefill, **call_kwargs):
    """A prefill of `prefill` tokens at index 0, then one token per step,
    through the decoding contract; the outputs side by side."""
    cache = layer.initial_cache(x.shape[0], x.shape[1])
    outputs = []
    for start, stop in [(0, prefill)] + [
        (i, i + 1) for i in range(prefill, x.shape[1])
    ]:
        out, cache = layer(
            x[:, start:stop], x[:, start:stop], use_causal_mask=True,
            cache=cache, cache_update_index=start, **call_kwargs,
        )  # fmt: skip
        outputs.append(as_float32(out))
    return np.concatenate(outputs, 1), cache


# === The formula ===


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("feature_map", MAPS)
def test_equals_the_numpy_formula_with_padding(feature_map, causal):
    layer = make(feature_map)
    masks = dict(query_mask=PADDING, value_mask=PADDING)
    expected, expected_weights = numpy_linear(layer, X, X, causal, **masks)
    out = layer(X, X, use_causal_mask=causal, **masks)
    np.testing.assert_allclose(out, expected, atol=2e-5)
    out, weights = layer(
        X, X, use_causal_mask=causal, return_attention_scores=True, **masks
    )
    np.testing.assert_allclose(weights, expected_weights, atol=2e-6)
    np.testing.assert_allclose(out, expected, atol=2e-5)


@pytest.mark.parametrize("feature_map", MAPS)
def test_grouped_query_heads_share_their_key_value_head(feature_map):
    layer = LinearAttention(4, D, feature_map=feature_map,
                            num_key_value_heads=2, seed=1)  # fmt: skip
    layer(X, X)
    expected, _ = numpy_linear(layer, X, X, True, value_mask=PADDING)
    out = layer(X, X, use_causal_mask=True, value_mask=PADDING)
    np.testing.assert_allclose(out, expected, atol=2e-5)
    assert tuple(layer.key_dense.kernel.shape) == (WIDTH, 2, D)


def test_cross_attention_with_other_lengths():
    """Tq != Tk, causal too (query i sees keys j <= i, keras's top-left
    alignment)."""
    layer = make("elu")
    query, value = normal(B, 3, WIDTH), normal(B, 9, WIDTH)
    for causal in (False, True):
        expected, _ = numpy_linear(layer, query, value, causal)
        out = layer(query, value, use_causal_mask=causal)
        np.testing.assert_allclose(out, expected, atol=2e-5)
    query = normal(B, 9, WIDTH)  # more queries than keys
    expected, _ = numpy_linear(layer, query, value[:, :4], True)
    out = layer(query, value[:, :4], use_causal_mask=True)
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_weights_times_values_are_the_heads_output():
    layer = make("favor")
    out, weights = layer(
        X, X, use_causal_mask=True, value_mask=PADDING,
        return_attention_scores=True,
    )  # fmt: skip
    v = np.asarray(layer.value_dense(X))  # (B, T, H, D)
    heads = np.einsum("bhqk,bkhd->bqhd", np.asarray(weights), v)
    np.testing.assert_allclose(out, layer.output_dense(heads), atol=1e-5)
    weights = np.asarray(weights)
    assert weights.shape == (B, H, T, T)
    np.testing.assert_array_equal(weights[0, :, :, 5:], 0.0)  # padded keys
    np.testing.assert_array_equal(np.triu(weights[1, 0], 1), 0.0)  # causal
    sums = weights[1, :, 1:].sum(-1)  # Σ / (Σ + ε): 1 but for ε
    assert np.all(sums <= 1.0 + 1e-6) and np.all(sums > 0.99)


def test_query_that_sees_no_key_gets_zero_heads_not_nan():
    layer = make("relu")
    mask = np.array([[True] * T, [False] * T])  # row 1: no key at all
    out = np.asarray(layer(X, X, value_mask=mask))
    bias = np.asarray(layer.output_dense.bias)
    np.testing.assert_allclose(out[1], np.broadcast_to(bias, out[1].shape))
    # relu features of zero: the query still gets zeros, never NaN.
    q = np.zeros((1, 3, WIDTH), "float32")
    layer.query_dense.set_weights([np.zeros((WIDTH, H, D)), np.zeros((H, D))])
    assert np.all(np.isfinite(np.asarray(layer(q, X[:1]))))


def test_masked_positions_never_leak_nan():
    layer = make("favor")
    dirty = X.copy()
    dirty[~PADDING] = np.nan
    masks = dict(query_mask=PADDING, value_mask=PADDING)
    for causal in (False, True):
        clean = np.asarray(layer(X, X, use_causal_mask=causal, **masks))
        out = np.asarray(layer(dirty, dirty, use_causal_mask=causal, **masks))
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out[PADDING], clean[PADDING], atol=1e-6)


def test_keras_masks_from_embedding():
    tokens = np.array([[5, 2, 7, 0, 0], [3, 4, 0, 0, 0]])
    embedding = keras.layers.Embedding(10, WIDTH, mask_zero=True)
    x = embedding(tokens)  # carries a Keras mask
    layer = make("elu")
    out = layer(x, x, use_causal_mask=True)
    mask = tokens != 0
    plain = np.asarray(embedding(tokens))
    expected, _ = numpy_linear(layer, plain, plain, True, mask, mask)
    np.testing.assert_allclose(out, expected, atol=2e-5)


# === Chunks ===


def numpy_causal_product(a, b, c):
    scores = np.tril(np.einsum("...if,...jf->...ij", a, b))
    return np.einsum("...ij,...je->...ie", scores, c)


@pytest.mark.parametrize("length, chunk_size", [(70, None), (11, 4), (3, 8)])
def test_causal_product_equals_the_quadratic_sum(length, chunk_size):
    a, b = normal(2, 3, length, 5), normal(2, 3, length, 5)
    c = normal(2, 3, length, 6)
    out = linear.causal_product(a, b, c, chunk_size)
    expected = numpy_causal_product(*(x.astype(np.float64) for x in (a, b, c)))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("feature_map", MAPS)
def test_chunked_causal_equals_numpy_for_length_not_a_chunk_multiple(
    feature_map, monkeypatch
):
    monkeypatch.setattr(linear, "CHUNK_SIZE", 3)  # T = 7: blocks 3, 3, 1
    layer = make(feature_map)
    expected, _ = numpy_linear(layer, X, X, True, PADDING, PADDING)
    out = layer(X, X, use_causal_mask=True, query_mask=PADDING,
                value_mask=PADDING)  # fmt: skip
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_default_chunks_over_a_long_sequence():
    x = normal(1, 150, WIDTH)  # blocks of 64, 64 and 22
    layer = make("favor")
    expected, _ = numpy_linear(layer, x, x, True)
    np.testing.assert_allclose(
        layer(x, x, use_causal_mask=True), expected, atol=2e-5
    )


@pytest.mark.parametrize(
    "feature_map, kwargs",
    [("elu", {}), ("favor", {"num_key_value_heads": 1}),
     ("relu", {"rotary_max_wavelength": 100})],
)  # fmt: skip
def test_gradients_equal_the_dense_autodiff_reference(
    feature_map, kwargs, monkeypatch
):
    """The chunked pass's blockwise gradient (CHUNK_SIZE 3, T = 7) equals
    autodiff through the dense weights' path, for weights and inputs."""
    monkeypatch.setattr(linear, "CHUNK_SIZE", 3)
    layer = make(feature_map, **kwargs)
    results = []
    for dense in (False, True):

        def loss(query, value, dense=dense):
            out = layer(
                query, value, use_causal_mask=True, value_mask=PADDING,
                return_attention_scores=dense,
            )  # fmt: skip
            out = out[0] if dense else out
            return ops.sum(ops.sin(out) * out)

        results.append(gradients(loss, layer.trainable_weights, [X, X]))
    for chunked, dense in zip(*results):
        assert np.all(np.isfinite(chunked))
        np.testing.assert_allclose(chunked, dense, rtol=1e-4, atol=1e-5)


# === Decoding ===


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"num_key_value_heads": 1}, {"rotary_max_wavelength": 100},
     {"value_dim": 3}],
)  # fmt: skip
@pytest.mark.parametrize("feature_map", MAPS)
def test_cached_decoding_equals_the_full_causal_pass(feature_map, kwargs):
    layer = make(feature_map, **kwargs)
    expected = np.asarray(layer(X, X, use_causal_mask=True))
    for prefill in (2, 3) if not kwargs else (3,):
        out, cache = decode(layer, X, prefill)
        np.testing.assert_allclose(out, expected, atol=2e-5)
    features = layer.num_random_features or D
    columns = layer.value_dim + (2 if feature_map == "favor" else 1)
    assert cache.shape == (B, layer.num_key_value_heads, features, columns)
    assert keras.backend.standardize_dtype(cache.dtype) == "float32"


def test_the_state_does_not_grow_with_max_length():
    layer = make("elu")
    short, long = layer.initial_cache(B, 4), layer.initial_cache(B, 4096)
    assert short.shape == long.shape == (B, H, D, D + 1)
    np.testing.assert_array_equal(short, 0.0)


def test_decoder_style_calls_with_query_mask_and_no_value_mask():
    """The Transformer decoder passes `query_mask` and `value_mask=None`
    with a cache; a padded query gets the bias output, the rest equal the
    full pass."""
    layer = make("favor")
    expected = np.asarray(layer(X, X, use_causal_mask=True))
    mask = np.ones((B, 1), bool)
    out, _ = decode(layer, X, 1, query_mask=mask, value_mask=None)
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_padded_new_keys_stay_out_of_the_state():
    layer = make("elu")
    cache = layer.initial_cache(B, T)
    mask = np.array([[True, False, True], [True, True, True]])
    _, masked = layer(
        X[:, :3], X[:, :3], use_causal_mask=True, cache=cache,
        cache_update_index=0, value_mask=mask,
    )  # fmt: skip
    kept = X[:1, [0, 2]]
    _, expected = layer(
        kept, kept, use_causal_mask=True, cache=cache[:1],
        cache_update_index=0,
    )  # fmt: skip
    np.testing.assert_allclose(masked[:1], expected, atol=1e-5)


def test_compiled_decoding_step():
    layer = make("favor")
    expected = np.asarray(layer(X, X, use_causal_mask=True))

    @compiled
    def step(x, cache, index):
        return layer(x, x, use_causal_mask=True, cache=cache,
                     cache_update_index=index)  # fmt: skip

    cache, outputs = layer.initial_cache(B, T), []
    for i in range(T):
        out, cache = step(X[:, i : i + 1], cache, ops.convert_to_tensor(i))
        outputs.append(np.asarray(out))
    np.testing.assert_allclose(np.concatenate(outputs, 1), expected, atol=2e-5)


# === FAVOR+ ===


def test_favor_approximates_softmax_attention_better_with_more_features():
    """FAVOR+'s weights estimate softmax(q kᵀ / √D): the mean error over
    seeds falls (about 2× per 8× features) as the features grow."""
    keras.utils.set_random_seed(1)
    x = normal(2, 16, WIDTH, scale=0.5)
    softmax = MultiHeadAttention(H, 8)
    _, expected = softmax(x, x, return_attention_scores=True)
    expected = np.asarray(expected)
    errors = []
    for count in (8, 64, 512):
        error = 0.0
        for seed in range(4):
            layer = LinearAttention(H, 8, feature_map="favor", seed=seed,
                                    num_random_features=count)  # fmt: skip
            layer(x, x)
            for name in ("query", "key", "value", "output"):
                weights = getattr(softmax, f"{name}_dense").get_weights()
                getattr(layer, f"{name}_dense").set_weights(weights)
            _, approximate = layer(x, x, return_attention_scores=True)
            approximate = np.asarray(approximate)
            error += np.abs(approximate - expected).mean() / 4
        errors.append(error)
    assert errors[0] > 1.5 * errors[1] and errors[1] > 1.5 * errors[2]
    assert errors[2] < 0.1 * np.mean(expected), errors  # 1/16 on average


def test_favor_features_are_orthogonal_blocks_and_seeded():
    omega = linear.orthogonal_random_features(4, 10, seed=5)  # blocks 4, 4, 2
    assert omega.shape == (4, 10) and omega.dtype == np.float32
    directions = omega / np.linalg.norm(omega, axis=0)
    for block in (directions[:, :4], directions[:, 4:8], directions[:, 8:]):
        gram = block.T @ block
        np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-5)
    same = linear.orthogonal_random_features(4, 10, seed=5)
    np.testing.assert_array_equal(omega, same)
    layer = make("favor")  # seed 3, 4 · key_dim features
    assert tuple(layer.random_features.shape) == (D, 4 * D)
    assert not layer.random_features.trainable
    first = np.asarray(layer.random_features)
    np.testing.assert_array_equal(
        first, linear.orthogonal_random_features(D, 4 * D, seed=3)
    )
    np.testing.assert_array_equal(make("favor").random_features, first)
    layer.redraw_features(seed=11)
    assert not np.allclose(layer.random_features, first)
    layer.redraw_features(seed=3)
    np.testing.assert_array_equal(layer.random_features, first)


def test_favor_stays_accurate_with_large_heads():
    """Key exponents shifted by the data's maximum, not the bound
    max |ω|²/2 (which underflows every key from key_dim 128 on)."""
    x = normal(1, 12, 16)
    layer = LinearAttention(1, 128, feature_map="favor", seed=0)
    layer(x, x)
    expected, _ = numpy_linear(layer, x, x, True)
    out = layer(x, x, use_causal_mask=True)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_saved_model_keeps_the_random_features(tmp_path):
    layer = LinearAttention(H, D, feature_map="favor")  # seed drawn
    inputs = keras.Input((T, WIDTH))
    model = keras.Model(inputs, layer(inputs, inputs, use_causal_mask=True))
    layer.redraw_features(seed=99)
    expected = np.asarray(model(X))
    model.save(tmp_path / "linear.keras")
    restored = keras.models.load_model(tmp_path / "linear.keras")
    np.testing.assert_array_equal(restored(X), expected)


# === Keras parity, layer checks, dtypes ===


@pytest.mark.parametrize("feature_map", MAPS)
def test_keras_multi_head_weights_load_and_project_alike(feature_map):
    theirs = keras.layers.MultiHeadAttention(num_heads=H, key_dim=D)
    theirs(X, X)
    ours = make(feature_map)
    own = [np.asarray(w) for w in ours.weights if "random" in w.path]
    ours.set_weights(own + theirs.get_weights())  # FAVOR+'s features first
    projections = (
        theirs._query_dense, theirs._key_dense, theirs._value_dense,
        theirs._output_dense,
    )  # fmt: skip
    expected, _ = numpy_linear(
        ours, X, X, True, value_mask=PADDING, projections=projections
    )
    out = ours(X, X, use_causal_mask=True, value_mask=PADDING)
    np.testing.assert_allclose(out, expected, atol=2e-5)


@pytest.mark.parametrize(
    "feature_map, num_weights", [("elu", 8), ("relu", 8), ("favor", 9)]
)
def test_check_layer(feature_map, num_weights):
    check_layer(
        LinearAttention,
        {"num_heads": H, "key_dim": D, "feature_map": feature_map, "seed": 2},
        [X, X],
        (B, T, WIDTH),
        call_kwargs={"use_causal_mask": True},
        num_weights=num_weights,
        atol=1e-5,
    )


def test_config_is_complete():
    layer = LinearAttention(
        H, D, value_dim=3, feature_map="favor", num_random_features=12,
        epsilon=1e-4, seed=5, num_key_value_heads=1, use_gate=True,
    )  # fmt: skip
    config = layer.get_config()
    assert config["feature_map"] == "favor"
    assert config["num_random_features"] == 12
    assert config["epsilon"] == 1e-4 and config["seed"] == 5
    assert config["num_key_value_heads"] == 1 and config["value_dim"] == 3
    assert "score" not in config and "dropout" not in config
    clone = LinearAttention.from_config(config)
    assert clone.get_config() == config
    assert LinearAttention(H, D).get_config()["num_random_features"] is None


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("feature_map", MAPS)
def test_mixed_precision_is_finite_with_large_inputs(policy, feature_map):
    layer = LinearAttention(H, D, feature_map=feature_map, seed=1,
                            dtype=policy)  # fmt: skip
    large = 100 * X  # features far past float16's range
    for causal in (False, True):
        out = layer(large, large, use_causal_mask=causal,
                    value_mask=PADDING)  # fmt: skip
        assert keras.backend.standardize_dtype(out.dtype) != "float32"
        assert np.all(np.isfinite(as_float32(out)))
    steps, cache = decode(layer, large, 2)  # the float32 state, stepwise
    assert np.all(np.isfinite(np.asarray(steps, "float32")))
    assert keras.backend.standardize_dtype(cache.dtype) == "float32"
    reference = LinearAttention(H, D, feature_map=feature_map, seed=1)
    reference(X, X)
    reference.set_weights(layer.get_weights())
    out = ops.cast(layer(X, X, use_causal_mask=True), "float32")
    expected = reference(X, X, use_causal_mask=True)
    np.testing.assert_allclose(out, expected, atol=0.1)


# === Refusals ===


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"feature_map": "softmax"}, "feature_map"),
        ({"num_random_features": 0, "feature_map": "favor"},
         "num_random_features"),
        ({"num_random_features": 16}, "num_random_features"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": -1e-6}, "epsilon"),
        ({"seed": "a"}, "seed"),
        ({"score": "dot"}, "score"),
        ({"chunk_size": 4}, "chunk_size"),
        ({"score_mod": "alibi"}, "score_mod"),
        ({"mask_mod": "causal"}, "mask_mod"),
        ({"sliding_window": 3}, "sliding_window"),
        ({"use_sinks": True}, "use_sinks"),
        ({"qk_norm": "rms"}, "qk_norm"),
        ({"dropout": 0.1}, "dropout"),
        ({"attention_axes": (1,)}, "attention_axes"),
        ({"key_dim": 0}, "key_dim"),
        ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ],
)  # fmt: skip
def test_bad_arguments_name_themselves(kwargs, name):
    arguments = {"num_heads": H, "key_dim": D, **kwargs}
    with pytest.raises(ValueError, match=name):
        LinearAttention(**arguments)


def test_valid_feature_maps_are_listed():
    with pytest.raises(ValueError, match="'elu', 'relu', 'favor'"):
        LinearAttention(H, D, feature_map="exp")


def test_what_linear_attention_cannot_do_is_refused_at_call():
    layer = make("favor")
    full = np.ones((B, T, T), bool)
    with pytest.raises(ValueError, match="attention_mask"):
        layer(X, X, attention_mask=full)
    with pytest.raises(ValueError, match="attention_bias"):
        layer(X, X, attention_bias=np.zeros((B, H, T, T), "float32"))
    cache = layer.initial_cache(B, T)
    with pytest.raises(ValueError, match="return_attention_scores"):
        layer(X, X, use_causal_mask=True, cache=cache, cache_update_index=0,
              return_attention_scores=True)  # fmt: skip
    with pytest.raises(ValueError, match="cache_update_index"):
        layer(X, X, cache=cache)
    with pytest.raises(ValueError, match="cache"):
        layer(X, X, use_causal_mask=True, cache=cache[:, :1],
              cache_update_index=0)  # fmt: skip
    with pytest.raises(ValueError, match="compute_cache"):
        layer.compute_cache(X)
    with pytest.raises(ValueError, match="max_length"):
        layer.initial_cache(B, 0)
    with pytest.raises(ValueError, match="rank 3"):
        LinearAttention(H, D)(normal(2, 3, 4, WIDTH), normal(2, 3, 4, WIDTH))
    with pytest.raises(ValueError, match="redraw_features"):
        make("elu").redraw_features(1)
