import keras
import numpy as np
import pytest

from keras_attention import scores
from tests.testing import check_layer
from tests.testing import gradients

rng = np.random.default_rng(1)


def make(*shape):
    return rng.normal(size=shape).astype("float32")


def weights(layer):
    return {w.path.split("/")[-1]: np.asarray(w) for w in layer.weights}


def test_dot_matches_numpy():
    q, k = make(2, 3, 4), make(2, 5, 4)
    np.testing.assert_allclose(
        scores.Dot()(q, k), q @ k.swapaxes(-1, -2), rtol=1e-5
    )


@pytest.mark.parametrize("scale", [None, 0.25])
def test_scaled_dot_matches_numpy(scale):
    q, k = make(2, 3, 8), make(2, 5, 8)
    expected = q @ k.swapaxes(-1, -2) * (scale or 1 / np.sqrt(8))
    np.testing.assert_allclose(
        scores.ScaledDot(scale)(q, k), expected, rtol=1e-5, atol=1e-6
    )


def test_general_matches_numpy_with_different_dims():
    q, k = make(2, 3, 4), make(2, 5, 6)
    layer = scores.General()
    out = np.asarray(layer(q, k))
    w = weights(layer)["kernel"]
    assert w.shape == (4, 6)
    np.testing.assert_allclose(out, q @ w @ k.swapaxes(-1, -2), rtol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_general_projected_keys_give_the_scores_of_call(dtype):
    # q·(W k) with the keys projected once == (q W)·k; float16 inputs of
    # ~200 give scores past float16's 65504, computed in float32 by both.
    q, k = make(2, 3, 16) * 200, make(2, 5, 12) * 200
    q, k = q.astype(dtype), k.astype(dtype)
    layer = scores.General()
    direct = np.asarray(layer(q, k))
    projected = layer.project_key(k)  # (B, Tk, dq)
    assert tuple(projected.shape) == (2, 5, 16)
    assert keras.backend.standardize_dtype(projected.dtype) == "float32"
    via_keys = np.asarray(layer.score_projected(q, projected))
    assert np.all(np.isfinite(via_keys))
    np.testing.assert_allclose(via_keys, direct, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("name", ["dot", "scaled_dot", "cosine", "distance"])
def test_scores_without_a_key_projection_score_the_raw_key(name):
    q, k = make(2, 3, 4), make(2, 5, 4)
    layer = scores.get(name)
    direct = np.asarray(layer(q, k))
    np.testing.assert_array_equal(np.asarray(layer.project_key(k)), k)
    np.testing.assert_allclose(
        layer.score_projected(q, layer.project_key(k)), direct, rtol=1e-6
    )


def test_location_needs_max_length():
    # No default: the kernel has one output per key position.
    with pytest.raises(TypeError, match="max_length"):
        scores.Location()
    with pytest.raises(ValueError, match="argument `max_length`"):
        scores.Location(max_length=None)


@pytest.mark.parametrize("normalize", [False, True])
def test_additive_matches_numpy(normalize):
    q, k = make(2, 3, 4), make(2, 5, 6)
    layer = scores.Additive(units=7, normalize=normalize)
    out = np.asarray(layer(q, k))
    w = weights(layer)
    hidden = (q @ w["query_kernel"])[:, :, None] + (k @ w["key_kernel"])[
        :, None
    ]
    v = w["v"]
    if normalize:
        hidden = hidden + w["b"]
        v = w["g"] * v / np.linalg.norm(v)
    np.testing.assert_allclose(out, np.tanh(hidden) @ v, rtol=1e-4, atol=1e-6)


def test_additive_projected_key_gives_same_scores():
    q, k = make(2, 3, 4), make(2, 5, 6)
    layer = scores.Additive(units=7)
    direct = np.asarray(layer(q, k))
    projected = layer.project_key(k)
    np.testing.assert_allclose(
        layer.score_projected(q, projected), direct, rtol=1e-5
    )


def test_cosine_matches_numpy():
    q, k = make(2, 3, 4), make(2, 5, 4)
    layer = scores.Cosine(initial_scale=5.0)
    qn = q / np.linalg.norm(q, axis=-1, keepdims=True)
    kn = k / np.linalg.norm(k, axis=-1, keepdims=True)
    np.testing.assert_allclose(
        layer(q, k), 5.0 * qn @ kn.swapaxes(-1, -2), rtol=1e-4, atol=1e-5
    )
    assert layer.trainable_weights  # the temperature is learned


def pairwise_distance(q, k):
    return np.linalg.norm(q[..., :, None, :] - k[..., None, :, :], axis=-1)


def test_inverse_distance_is_the_weather_station_score():
    stations = np.array([[[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]]], "float32")
    query = np.array([[[0.0, 1.0]]], "float32")
    out = np.asarray(scores.Distance("inverse")(query, stations))
    np.testing.assert_allclose(
        out, 1.0 / pairwise_distance(query, stations), rtol=1e-5
    )


def test_gaussian_distance_matches_numpy():
    q, k = make(2, 3, 2), make(2, 5, 2)
    out = np.asarray(scores.Distance("gaussian", bandwidth=0.5)(q, k))
    expected = -(pairwise_distance(q, k) ** 2) / (2 * 0.5**2)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_distance_is_finite_when_query_sits_on_a_key():
    k = make(1, 4, 2)
    out = np.asarray(scores.Distance()(k[:, :1], k))
    assert np.isfinite(out).all() and out[0, 0, 0] == out.max()


def test_learned_bandwidth_gets_gradient():
    layer = scores.Distance("gaussian", learn_bandwidth=True)
    q, k = make(1, 2, 2), make(1, 3, 2)
    layer(q, k)
    (grad,) = gradients(
        lambda: keras.ops.sum(layer(q, k)), layer.trainable_weights
    )
    assert np.isfinite(grad) and grad != 0


def test_location_uses_only_query_content():
    q = make(2, 3, 4)
    layer = scores.Location(max_length=6)
    out = np.asarray(layer(q, make(2, 5, 9)))
    w = weights(layer)["kernel"]
    np.testing.assert_allclose(out, (q @ w)[..., :5], rtol=1e-5)
    np.testing.assert_allclose(out, layer(q, make(2, 5, 9)), rtol=1e-6)


def test_location_rejects_keys_longer_than_max_length():
    with pytest.raises(ValueError, match="max_length"):
        scores.Location(max_length=3)(make(1, 2, 4), make(1, 5, 4))


ALL = [
    ("dot", {}),
    ("scaled_dot", {}),
    ("general", {}),
    ("additive", {"units": 5}),
    ("cosine", {}),
    ("distance", {}),
    ("gaussian", {}),
    ("location", {"max_length": 8}),
]


@pytest.mark.parametrize("name,kwargs", ALL)
def test_scores_accept_any_leading_dims(name, kwargs):
    # (B, H, Tq, D) x (B, H, Tk, D): heads as an extra leading dim.
    q, k = make(2, 3, 4, 6), make(2, 3, 5, 6)
    layer = scores.get(name, **kwargs)
    out = np.asarray(layer(q, k))
    assert out.shape == (2, 3, 4, 5)
    # Same as scoring each head on its own with the same weights.
    np.testing.assert_allclose(out[:, 1], layer(q[:, 1], k[:, 1]), rtol=1e-5)


@pytest.mark.parametrize("name,kwargs", ALL)
def test_scores_serialize(name, kwargs):
    layer = scores.get(name, **kwargs)
    cls = type(layer)
    check_layer(
        cls,
        layer.get_config(),
        [make(2, 3, 4), make(2, 5, 4)],
        (2, 3, 5),
    )


@pytest.mark.parametrize(
    "alias,cls,kernel",
    [
        ("bilinear", scores.General, None),
        ("luong", scores.General, None),
        ("concat", scores.Additive, None),
        ("mlp", scores.Additive, None),
        ("bahdanau", scores.Additive, None),
        ("inverse_distance", scores.Distance, "inverse"),
        ("gaussian", scores.Distance, "gaussian"),
        ("SCALED_DOT", scores.ScaledDot, None),
    ],
)
def test_get_resolves_aliases(alias, cls, kernel):
    layer = scores.get(alias)
    assert type(layer) is cls
    if kernel:
        assert layer.kernel == kernel


def test_get_accepts_instance_and_config():
    layer = scores.Additive(units=3)
    assert scores.get(layer) is layer
    clone = scores.get(scores.serialize(layer))
    assert isinstance(clone, scores.Additive) and clone.units == 3


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Valid names: .*scaled_dot"):
        scores.get("dott")


@pytest.mark.parametrize("name", ["dot", "scaled_dot", "cosine", "distance"])
def test_same_dim_scores_reject_last_dim_mismatch(name):
    with pytest.raises(ValueError, match=r"query.shape=\(2, 3, 4\)"):
        scores.get(name)(make(2, 3, 4), make(2, 5, 6))


def test_scores_reject_rank_mismatch():
    with pytest.raises(ValueError, match="same rank"):
        scores.General()(make(2, 3, 4), make(5, 4))


@pytest.mark.parametrize(
    "factory",
    [
        lambda: scores.ScaledDot(scale=-1.0),
        lambda: scores.Additive(units=0),
        lambda: scores.Cosine(initial_scale=0.0),
        lambda: scores.Distance(kernel="laplace"),
        lambda: scores.Distance(bandwidth=0.0),
        lambda: scores.Location(max_length=None),
    ],
)
def test_bad_constructor_arguments_raise(factory):
    with pytest.raises(ValueError, match="Received"):
        factory()


def test_scores_train_in_a_model():
    q_in, k_in = keras.Input((3, 4)), keras.Input((5, 4))
    out = scores.Additive(units=4)(q_in, k_in)
    model = keras.Model([q_in, k_in], out)
    model.compile("adam", "mse")
    history = model.fit(
        [make(8, 3, 4), make(8, 5, 4)], make(8, 3, 5), epochs=3, verbose=0
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
