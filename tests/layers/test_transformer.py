"""Tests of the Transformer blocks and stacks."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention.layers import TransformerDecoder
from keras_attention.layers import TransformerDecoderBlock
from keras_attention.layers import TransformerEncoder
from keras_attention.layers import TransformerEncoderBlock
from tests.testing import check_layer
from tests.testing import compiled

rng = np.random.default_rng(0)
X = rng.normal(size=(2, 6, 8)).astype("float32")
MEMORY = rng.normal(size=(2, 5, 8)).astype("float32")
BLOCK = {"num_heads": 2, "intermediate_dim": 16}


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_matches_formula(norm_first):
    block = TransformerEncoderBlock(**BLOCK, norm_first=norm_first)
    out = block(X)
    attention, ffn = block.self_attention, block.feed_forward
    norm1, norm2 = block.self_attention_norm, block.feed_forward_norm
    if norm_first:
        h = ops.add(X, attention(norm1(X), norm1(X)))
        expected = h + ffn(norm2(h))
    else:
        h = norm1(ops.add(X, attention(X, X)))
        expected = norm2(h + ffn(h))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # FFN(x) = relu(x W1 + b1) W2 + b2
    w1, b1, w2, b2 = (np.asarray(w) for w in ffn.weights)
    np.testing.assert_allclose(
        ffn(X), np.maximum(X @ w1 + b1, 0) @ w2 + b2, atol=1e-5
    )


@pytest.mark.parametrize(
    "cls, args",
    [
        (TransformerEncoderBlock, ()),
        (TransformerDecoderBlock, (MEMORY,)),
        (TransformerEncoder, ()),
        (TransformerDecoder, (MEMORY,)),
    ],
)
def test_padding_does_not_change_real_positions(cls, args):
    kwargs = (
        {**BLOCK, "num_layers": 2} if "Block" not in cls.__name__ else BLOCK
    )
    layer = cls(**kwargs, norm_first=True)
    short = layer(X[:, :4], *args)
    padded = X.copy()
    padded[:, 4:] = 100.0  # garbage in the padding
    mask = np.array([[True] * 4 + [False] * 2] * 2)
    out = layer(padded, *args, mask=mask)
    np.testing.assert_allclose(out[:, :4], short, atol=1e-4)


def test_keras_mask_from_embedding_is_used():
    tokens = np.array([[4, 5, 6, 0, 0], [7, 0, 0, 0, 0]])
    embedding = keras.layers.Embedding(10, 8, mask_zero=True)
    block = TransformerEncoderBlock(**BLOCK)
    out = block(embedding(tokens))
    short = block(embedding(tokens[:1, :3]))
    np.testing.assert_allclose(out[:1, :3], short, atol=1e-5)
    inputs = keras.Input((None,), dtype="int32")
    outputs = block(embedding(inputs))
    assert outputs._keras_mask is not None


def test_decoder_block_is_causal():
    block = TransformerDecoderBlock(**BLOCK)
    full = block(X, MEMORY)
    prefix = block(X[:, :3], MEMORY)
    np.testing.assert_allclose(full[:, :3], prefix, atol=1e-5)


def test_decoder_block_returns_attention_weights():
    block = TransformerDecoderBlock(**BLOCK)
    out, weights = block(X, MEMORY, return_attention_scores=True)
    assert weights["self_attention"].shape == (2, 2, 6, 6)
    assert weights["cross_attention"].shape == (2, 2, 6, 5)
    np.testing.assert_array_equal(
        np.triu(np.asarray(weights["self_attention"]), 1), 0.0
    )
    encoder = TransformerEncoderBlock(**BLOCK)
    _, w = encoder(X, return_attention_scores=True)
    assert w.shape == (2, 2, 6, 6)


@pytest.mark.parametrize(
    "cls, extra",
    [
        (
            TransformerDecoderBlock,
            {"num_key_value_heads": 1, "rotary_max_wavelength": 100},
        ),
        (TransformerDecoder, {"num_layers": 2, "norm_first": True}),
    ],
)
def test_decoder_cache_reproduces_full_forward(cls, extra):
    decoder = cls(**BLOCK, **extra)
    expected = decoder(X, MEMORY)
    heads = extra.get("num_key_value_heads", 2)
    cache = np.zeros((2, 2, 6, heads, 4), "float32")
    if "num_layers" in extra:  # a stack takes a list of block caches
        cache = [cache] * extra["num_layers"]
    step = compiled(
        lambda x, cache, i: decoder(
            x, MEMORY, cache=cache, cache_update_index=i
        )
    )
    outputs = []
    for i in range(6):
        out, cache = step(X[:, i : i + 1], cache, ops.convert_to_tensor(i))
        outputs.append(out)
    np.testing.assert_allclose(np.concatenate(outputs, 1), expected, atol=1e-5)


def test_cross_attention_cache_and_list_caches_reproduce_full_forward():
    decoder = TransformerDecoder(2, **BLOCK)
    expected = decoder(X, MEMORY)
    cross = decoder.compute_cross_attention_cache(MEMORY)
    assert [tuple(c.shape) for c in cross] == [(2, 2, 5, 2, 4)] * 2
    caches = [np.zeros((2, 2, 6, 2, 4), "float32")] * 2
    outputs = []
    for i in range(6):
        out, caches = decoder(
            X[:, i : i + 1],
            MEMORY,
            cache=caches,
            cache_update_index=i,
            cross_attention_cache=cross,
        )
        assert isinstance(caches, list) and len(caches) == 2
        outputs.append(out)
    np.testing.assert_allclose(np.concatenate(outputs, 1), expected, atol=1e-5)


def test_stack_cache_must_be_a_list_of_block_caches():
    decoder = TransformerDecoder(2, **BLOCK)
    cache = np.zeros((2, 2, 2, 6, 2, 4), "float32")  # stacked: not accepted
    with pytest.raises(ValueError, match="`cache` must be a list of 2"):
        decoder(X[:, :1], MEMORY, cache=cache, cache_update_index=0)
    with pytest.raises(ValueError, match="one cache per block"):
        decoder(X[:, :1], MEMORY, cache=[cache[:, 0]], cache_update_index=0)


def test_cross_attention_cache_needs_cross_attention():
    block = TransformerDecoderBlock(**BLOCK)
    block(X)
    with pytest.raises(ValueError, match="no cross-attention"):
        block.compute_cross_attention_cache(MEMORY)


def test_stacks_return_per_layer_weights():
    encoder = TransformerEncoder(3, **BLOCK)
    out, weights = encoder(X, return_attention_scores=True)
    assert out.shape == X.shape and len(weights) == 3
    decoder = TransformerDecoder(2, **BLOCK)
    out, weights = decoder(X, MEMORY, return_attention_scores=True)
    assert len(weights) == 2
    assert weights[1]["cross_attention"].shape == (2, 2, 6, 5)


@pytest.mark.parametrize(
    "cls, kwargs, inputs",
    [
        (TransformerEncoderBlock, {**BLOCK, "score": "general"}, [X]),
        (TransformerDecoderBlock, {**BLOCK, "norm_first": True}, [X, MEMORY]),
        (
            TransformerEncoder,
            {**BLOCK, "num_layers": 2, "norm_first": True, "chunk_size": 4},
            [X],
        ),
        (TransformerDecoder, {**BLOCK, "num_layers": 2}, [X, MEMORY]),
    ],
)
def test_check_layer(cls, kwargs, inputs):
    check_layer(cls, kwargs, inputs, X.shape, atol=1e-5)


def test_functional_encoder_decoder_fits():
    source = keras.Input((None,), dtype="int32")
    target = keras.Input((None,), dtype="int32")
    embed = keras.layers.Embedding(12, 8, mask_zero=True)
    memory = TransformerEncoder(1, **BLOCK, dropout=0.1)(embed(source))
    hidden = TransformerDecoder(1, **BLOCK, dropout=0.1)(embed(target), memory)
    model = keras.Model([source, target], keras.layers.Dense(12)(hidden))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(True))
    data = rng.integers(1, 12, size=(16, 5))
    history = model.fit([data, data], data, epochs=3, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
