"""A masked position never influences an output, even holding NaN or inf.

Each case runs a layer twice: on clean inputs, and with NaN, +inf or -inf
written into every padded (masked) position. The real positions' outputs
must be equal (and finite), as must the gradients of a loss over them.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_attention as ka
from tests.testing import gradients

rng = np.random.default_rng(7)
QUERY = rng.normal(size=(2, 5, 6)).astype("float32")
VALUE = rng.normal(size=(2, 7, 6)).astype("float32")
QUERY_MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
VALUE_MASK = np.array([[1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0]], bool)
POISONS = [np.nan, np.inf, -np.inf]


def poison(x, mask, value):
    """`x` with `value` at every masked position."""
    return np.where(mask[..., None], x, value).astype("float32")


def attention(score):
    def run(layer, query, value):
        return layer(query, value, query_mask=QUERY_MASK, value_mask=VALUE_MASK)

    return lambda: ka.Attention(score=score), run


def multi_head(causal=False, **kwargs):
    def run(layer, query, value):
        return layer(
            query,
            value,
            query_mask=QUERY_MASK,
            value_mask=VALUE_MASK,
            use_causal_mask=causal,
        )

    return lambda: ka.MultiHeadAttention(2, 4, **kwargs), run


def family(cls, key_dim, causal=False, **kwargs):
    """A layer of the attention family, called as `multi_head`'s."""
    run = multi_head(causal)[1]
    return lambda: cls(2, key_dim, **kwargs), run


def mechanism(cls, **kwargs):
    def run(layer, query, value):
        context, alignments = layer(query[:, 0], value, VALUE_MASK)
        return ops.concatenate([context, alignments], axis=-1)

    return lambda: cls(**kwargs), run


def decoder():
    def run(layer, query, value):
        return layer(query, value, memory_mask=VALUE_MASK)

    return lambda: ka.AttentionDecoder(6), run


def pooling():
    def run(layer, query, value):
        return layer(value, mask=VALUE_MASK)

    return lambda: ka.AttentionPooling(), run


def encoder_block(**kwargs):
    def run(layer, query, value):
        return layer(value, mask=VALUE_MASK)

    return lambda: ka.TransformerEncoderBlock(2, 8, **kwargs), run


def decoder_block():
    def run(layer, query, value):
        return layer(
            query,
            value,
            mask=QUERY_MASK,
            encoder_outputs_mask=VALUE_MASK,
        )

    return lambda: ka.TransformerDecoderBlock(2, 8), run


CASES = {
    **{f"attention_{s}": attention(s) for s in ka.scores.names()
       if s != "location"},
    "multi_head": multi_head(),
    "multi_head_gqa": multi_head(num_key_value_heads=1),
    "multi_head_chunked": multi_head(chunk_size=3),
    "multi_head_chunked_causal": multi_head(chunk_size=2, causal=True),
    "multi_head_general": multi_head(score="general"),
    "multi_head_sinks_qk_norm": multi_head(use_sinks=True, qk_norm="rms"),
    "multi_head_sinks_chunked": multi_head(use_sinks=True, chunk_size=2,
                                           causal=True),
    "latent": family(ka.MultiHeadLatentAttention, 4, kv_latent_dim=4,
                     rotary_dim=2),
    "latent_chunked_causal": family(ka.MultiHeadLatentAttention, 4,
                                    kv_latent_dim=4, chunk_size=2,
                                    causal=True),
    "differential": family(ka.DifferentialAttention, 2),
    "differential_chunked_causal": family(ka.DifferentialAttention, 2,
                                          chunk_size=2, causal=True),
    "linear": family(ka.LinearAttention, 2),
    "linear_favor_causal": family(ka.LinearAttention, 2, feature_map="favor",
                                  causal=True),
    "bahdanau": mechanism(ka.BahdanauAttention, units=4),
    "luong": mechanism(ka.LuongAttention),
    "luong_concat": mechanism(ka.LuongAttention, score="concat"),
    "attention_decoder": decoder(),
    "attention_pooling": pooling(),
    "encoder_block": encoder_block(),
    "encoder_block_pre_norm": encoder_block(norm_first=True),
    "encoder_block_chunked": encoder_block(chunk_size=3),
    "decoder_block": decoder_block(),
}  # fmt: skip


def real_mask(name, output_shape):
    """Bool mask of the outputs at real (unpadded) positions."""
    if name.startswith("encoder_block"):
        return VALUE_MASK
    if len(output_shape) == 3 and output_shape[1] == QUERY.shape[1]:
        return QUERY_MASK
    return np.ones(output_shape[:1], bool)


def real_rows(name, output):
    """The outputs at real positions, gathered (no `0 · NaN` anywhere)."""
    mask = real_mask(name, tuple(output.shape))
    flat = ops.reshape(output, (-1,) + tuple(output.shape[mask.ndim :]))
    return ops.take(flat, np.flatnonzero(mask), axis=0)


@pytest.mark.parametrize("value", POISONS, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_poisoned_padding_changes_no_real_output(name, value):
    make, run = CASES[name]
    keras.utils.set_random_seed(0)
    layer = make()
    clean = run(layer, QUERY, VALUE)
    query = poison(QUERY, QUERY_MASK, value)
    dirty_value = poison(VALUE, VALUE_MASK, value)
    dirty = run(layer, query, dirty_value)
    expected = np.asarray(real_rows(name, clean))
    actual = np.asarray(real_rows(name, dirty))
    assert np.isfinite(actual).all()
    np.testing.assert_allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize(
    "name",
    ["multi_head", "multi_head_chunked", "attention_additive", "bahdanau",
     "encoder_block", "multi_head_sinks_chunked", "latent_chunked_causal",
     "differential"],
)  # fmt: skip
def test_poisoned_padding_leaves_gradients_finite_and_equal(name):
    make, run = CASES[name]
    keras.utils.set_random_seed(0)
    layer = make()
    run(layer, QUERY, VALUE)  # build

    def loss_of(query, value):
        def loss():
            return ops.sum(ops.sin(real_rows(name, run(layer, query, value))))

        return loss

    clean = gradients(loss_of(QUERY, VALUE), layer.trainable_weights)
    dirty = gradients(
        loss_of(
            poison(QUERY, QUERY_MASK, np.nan),
            poison(VALUE, VALUE_MASK, np.nan),
        ),
        layer.trainable_weights,
    )
    for expected, actual in zip(clean, dirty):
        assert np.isfinite(actual).all()
        np.testing.assert_allclose(actual, expected, atol=1e-5)
