"""The one decoding contract of the cached attention layers.

`cache = layer.initial_cache(B, T_max)`, then `layer(q, v,
use_causal_mask=True, cache=cache, cache_update_index=i)` -> `(output,
cache)`; keras-hub drives the same layer with an explicit mask over the
whole cache instead. Both must reproduce the full causal pass.
"""

import keras
import keras_hub
import numpy as np
import pytest

from keras_attention import mods
from keras_attention.layers import MultiHeadAttention
from tests.testing import decode_in_steps

rng = np.random.default_rng(3)
B, T, WIDTH = 2, 6, 8


def normal(*shape):
    return rng.normal(size=shape).astype("float32")


def hub_mask(index, new=1, padding=None):
    """keras-hub's decoder mask: `(B, new, T_max)`, keys up to each query,
    and'ed with a key padding mask."""
    queries = index + np.arange(new)[:, None]  # (new, 1)
    mask = np.arange(T)[None, :] <= queries  # (new, T_max)
    mask = np.broadcast_to(mask, (B, new, T))
    if padding is not None:
        mask = mask & padding[:, None, :]
    return np.array(mask)


LAYERS = {
    "plain": {},
    "gqa": {"num_key_value_heads": 1},
    "rotary": {"rotary_max_wavelength": 100},
    "alibi": {"score_mod": mods.ALiBi},
    "t5": {"score_mod": lambda: mods.RelativePositionBias(8, 16, False)},
    "softcap": {"score_mod": lambda: mods.SoftCap(2.0)},
    "window": {"mask_mod": lambda: mods.SlidingWindow(3)},
    "causal_mod": {"mask_mod": mods.Causal},
    "prefix": {"mask_mod": lambda: mods.PrefixLM(2)},
}


def make_layer(name, chunk_size):
    kwargs = {
        key: value() if callable(value) else value
        for key, value in LAYERS[name].items()
    }
    layer = MultiHeadAttention(4, 2, chunk_size=chunk_size, **kwargs)
    if name == "t5":  # a zero-initialised bias would hide a wrong index
        layer(normal(B, T, WIDTH), normal(B, T, WIDTH))
        bias = layer.score_mod.embeddings
        bias.assign(normal(*bias.shape))
    return layer


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_keras_hub_mask_over_the_whole_cache_equals_full_pass(name, chunk_size):
    layer = make_layer(name, chunk_size)
    x = normal(B, T, WIDTH)
    expected = np.asarray(layer(x, x, use_causal_mask=True))
    got, _ = decode_in_steps(layer, x, prefill=1, attention_mask=hub_mask)
    np.testing.assert_allclose(got, expected, atol=2e-5)


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("name", ["plain", "gqa", "alibi", "window"])
def test_contract_prefill_then_steps_equals_full_pass(name, chunk_size):
    layer = make_layer(name, chunk_size)
    x = normal(B, T, WIDTH)
    expected = np.asarray(layer(x, x, use_causal_mask=True))
    cache = layer.initial_cache(B, T)
    assert cache.shape == (B, 2, T, layer.num_key_value_heads, 2)
    np.testing.assert_array_equal(cache, 0.0)
    got, _ = decode_in_steps(layer, x, prefill=3)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_keras_hub_cached_layer_parity_with_padding():
    """keras-hub's `CachedMultiHeadAttention` and ours, same weights, driven
    the keras-hub way (prefill, then steps), with a padded key."""
    theirs = keras_hub.layers.CachedMultiHeadAttention(num_heads=3, key_dim=4)
    ours = MultiHeadAttention(num_heads=3, key_dim=4)
    x = normal(B, T, WIDTH)
    padding = np.ones((B, T), bool)
    padding[1, 1] = False
    theirs(x, x)
    ours(x, x)
    ours.set_weights(theirs.get_weights())
    their_cache = np.zeros((B, 2, T, 3, 4), "float32")
    our_cache = ours.initial_cache(B, T)
    for index, new in ((0, 2), (2, 1), (3, 1), (4, 2)):
        step = x[:, index : index + new]
        mask = hub_mask(index, new, padding)
        want, their_cache = theirs(
            step, step, attention_mask=mask, cache=their_cache,
            cache_update_index=index,
        )  # fmt: skip
        got, our_cache = ours(
            step, step, attention_mask=mask, cache=our_cache,
            cache_update_index=index,
        )  # fmt: skip
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(our_cache, their_cache, atol=1e-6)


def test_initial_cache_dtype_follows_the_policy():
    layer = MultiHeadAttention(2, 4, dtype="mixed_float16")
    cache = layer.initial_cache(3, 5)
    assert keras.backend.standardize_dtype(cache.dtype) == "float16"
    assert cache.shape == (3, 2, 5, 2, 4)


@pytest.mark.parametrize(
    "args, name",
    [((0, 4), "batch_size"), ((2, 0), "max_length"), ((2, 2.5), "max_length")],
)
def test_initial_cache_rejects_bad_sizes(args, name):
    with pytest.raises(ValueError, match=name):
        MultiHeadAttention(2, 4).initial_cache(*args)


def test_initial_cache_needs_equal_key_and_value_dims():
    with pytest.raises(ValueError, match="value_dim"):
        MultiHeadAttention(2, 4, value_dim=3).initial_cache(1, 4)


def test_mask_shorter_than_the_cache_is_refused_naming_attention_mask():
    layer = MultiHeadAttention(2, 4)
    x = normal(B, 1, WIDTH)
    with pytest.raises(ValueError, match="attention_mask"):
        layer(
            x, x, attention_mask=np.ones((B, 1, T - 1), bool),
            cache=layer.initial_cache(B, T), cache_update_index=0,
        )  # fmt: skip
