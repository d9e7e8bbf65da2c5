"""`MultiHeadLatentAttention`: DeepSeek-V2's equations in NumPy, the latent
cache, absorbed decoding == the full causal pass."""

import math

import numpy as np
import pytest

from keras_attention import mods
from keras_attention.layers.latent import MultiHeadLatentAttention
from tests.testing import check_layer
from tests.testing import decode_in_steps

rng = np.random.default_rng(41)
B, T, WIDTH, H, D, C, R = 2, 7, 8, 3, 4, 6, 2
X = rng.normal(size=(B, T, WIDTH)).astype("float32")
PADDING = np.ones((B, T), bool)
PADDING[1, 5:] = False


def rope(x, positions, wavelength=10000):
    """NumPy RoPE (rotate-half) of the last axis; positions on axis 1."""
    dim = x.shape[-1]
    inverse = 1.0 / wavelength ** (np.arange(0, dim, 2) / dim)
    angles = positions.reshape((-1,) + (1,) * (x.ndim - 2)) * inverse
    angles = np.concatenate([angles, angles], -1)
    first, second = x[..., : dim // 2], x[..., dim // 2 :]
    rotated = np.concatenate([-second, first], -1)
    return x * np.cos(angles) + rotated * np.sin(angles)


def kernel_of(dense):
    return np.asarray(dense.kernel)


def numpy_mla(layer, x, mask):
    """Equations (9)-(19) of DeepSeek-V2 (no biases), per head."""
    positions = np.arange(T, dtype="float32")
    c_kv = x @ kernel_of(layer.kv_latent)  # (B, T, C)
    k_content = np.einsum("btc,chd->bthd", c_kv, kernel_of(layer.key_dense))
    v = np.einsum("btc,chd->bthd", c_kv, kernel_of(layer.value_dense))
    q = np.einsum("btd,dhe->bthe", x, kernel_of(layer.query_dense))
    q_content, q_rotary = q[..., :D], rope(q[..., D:], positions)
    k_rotary = rope(x @ kernel_of(layer.rotary_key), positions)  # (B, T, R)
    logits = np.einsum("bqhd,bkhd->bhqk", q_content, k_content)
    logits += np.einsum("bqhr,bkr->bhqk", q_rotary, k_rotary)
    logits = np.where(mask, logits / math.sqrt(D + R), -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    heads = np.einsum("bhqk,bkhd->bqhd", weights, v)
    output = np.einsum("bqhd,hde->bqe", heads, kernel_of(layer.output_dense))
    return output, weights


def causal_padded():
    return np.tril(np.ones((T, T), bool))[None, None] & PADDING[:, None, None]


def layer_with(**kwargs):
    layer = MultiHeadLatentAttention(H, D, C, rotary_dim=R, **kwargs)
    layer(X, X)
    return layer


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_full_pass_equals_the_paper(chunk_size):
    layer = layer_with(chunk_size=chunk_size)
    expected, expected_weights = numpy_mla(layer, X, causal_padded())
    out = layer(X, X, value_mask=PADDING, use_causal_mask=True)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    _, weights = layer(
        X, X, value_mask=PADDING, use_causal_mask=True,
        return_attention_scores=True,
    )  # fmt: skip
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)


LAYERS = {
    "plain": {},
    "low_rank_query": {"query_latent_dim": 5, "use_bias": True},
    "chunked": {"chunk_size": 2},
    "alibi": {"score_mod": mods.ALiBi()},
    "window": {"mask_mod": mods.SlidingWindow(3)},
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_absorbed_latent_decoding_equals_full_pass(name):
    layer = layer_with(**LAYERS[name])
    expected = np.asarray(layer(X, X, value_mask=PADDING, use_causal_mask=True))
    assert layer.initial_cache(B, T).shape == (B, T, C + R)

    def hub_mask(index, new):  # keras-hub's way, with the padding
        queries = index + np.arange(new)[:, None]
        return (np.arange(T) <= queries)[None] & PADDING[:, None, :]

    got, _ = decode_in_steps(layer, X, prefill=3, attention_mask=hub_mask)
    real = PADDING[:, :, None]  # padded queries' outputs are not compared
    np.testing.assert_allclose(got * real, expected * real, atol=2e-5)


def test_cache_holds_only_the_latent_and_the_rotary_key():
    layer = layer_with()
    cache = layer.initial_cache(B, T)
    _, cache = layer(
        X, X, use_causal_mask=True, cache=cache, cache_update_index=0
    )
    latent = X @ kernel_of(layer.kv_latent)
    rotary = rope(X @ kernel_of(layer.rotary_key), np.arange(T, dtype="f4"))
    np.testing.assert_allclose(cache[..., :C], latent, atol=1e-5)
    np.testing.assert_allclose(cache[..., C:], rotary, atol=1e-5)
    assert layer.cache_size_per_token() == C + R  # MHA: 2 * H * D = 24


def test_check_layer():
    check_layer(
        MultiHeadLatentAttention,
        {"num_heads": H, "key_dim": D, "kv_latent_dim": C, "rotary_dim": R},
        [X, X],
        (B, T, WIDTH),
        num_weights=6,
    )


def test_up_projections_have_no_bias():
    layer = layer_with(use_bias=True)
    paths = {w.path.split("/", 1)[1] for w in layer.weights}
    assert "query/bias" in paths and "attention_output/bias" in paths
    assert "key/bias" not in paths and "value/bias" not in paths


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kv_latent_dim": 0}, "kv_latent_dim"),
        ({"rotary_dim": 3}, "rotary_dim"),
        ({"rotary_dim": -2}, "rotary_dim"),
        ({"query_latent_dim": 0}, "query_latent_dim"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_sizes_name_themselves(kwargs, name):
    arguments = {"num_heads": H, "key_dim": D, "kv_latent_dim": C, **kwargs}
    with pytest.raises(ValueError, match=name):
        MultiHeadLatentAttention(**arguments)


def test_bad_cache_names_cache():
    layer = layer_with()
    with pytest.raises(ValueError, match="cache"):
        layer(
            X[:, :1], X[:, :1], cache=np.zeros((B, T, C), "float32"),
            cache_update_index=0,
        )  # fmt: skip
