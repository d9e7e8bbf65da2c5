"""Dtype policies: kept through save/load, and no float16 overflow."""

import os

import keras
import numpy as np
import pytest

import keras_attention as ka
from keras_attention.models import Seq2Seq
from keras_attention.models import Transformer
from keras_attention.models import TransformerClassifier

POLICIES = ["float32", "mixed_float16", "mixed_bfloat16"]
SOURCE = np.array([[5, 6, 7, 2, 0], [8, 9, 2, 0, 0]], "int32")
TARGET_IN = np.array([[1, 4, 5], [1, 7, 0]], "int32")
PAIR = {"source": SOURCE, "target_in": TARGET_IN}


def tokens_model(layer_fn):
    """A functional model: token ids -> embedding -> the layer."""
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    return keras.Model(tokens, layer_fn(x)), SOURCE


MODELS = {
    "seq2seq": lambda: (Seq2Seq(20, 20, embedding_dim=8, units=8), PAIR),
    "seq2seq_lstm_luong": lambda: (
        Seq2Seq(20, 20, embedding_dim=8, units=8, cell="lstm",
                attention="luong", num_layers=2),
        PAIR,
    ),
    "transformer": lambda: (
        Transformer(20, 20, num_layers=1, hidden_dim=8, num_heads=2,
                    intermediate_dim=16, dropout=0.1),
        PAIR,
    ),
    "classifier": lambda: (
        TransformerClassifier(20, 3, num_layers=1, hidden_dim=8,
                              num_heads=2, intermediate_dim=16,
                              pooling="attention"),
        SOURCE,
    ),
    "attention": lambda: tokens_model(
        lambda x: ka.Attention(score="general")(x, x)
    ),
    "multi_head_chunked": lambda: tokens_model(
        lambda x: ka.MultiHeadAttention(
            2, 4, chunk_size=2, rotary_max_wavelength=100
        )(x, x, use_causal_mask=True)
    ),
    "encoder": lambda: tokens_model(
        lambda x: ka.TransformerEncoder(2, num_heads=2, intermediate_dim=8)(x)
    ),
    "pooling": lambda: tokens_model(lambda x: ka.AttentionPooling()(x)),
    "rnn_decoder": lambda: tokens_model(
        lambda x: ka.AttentionDecoder(8, attention="luong")(x, x)
    ),
}  # fmt: skip


def layer_policies(model):
    """The policy of every layer, nested ones (scores, dropouts) too.

    Containers (the `encoder`/`decoder` sub-models) have no policy of their
    own that computes anything: Keras gives functional models the global one.
    """
    return [
        (layer.name.rstrip("_0123456789"), layer.dtype_policy.name)
        for layer in model._flatten_layers(include_self=False)
        if not isinstance(layer, (keras.layers.InputLayer, keras.Model))
    ]


@pytest.fixture
def policy(request):
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy("float32")


# Which policy each layer keeps is configuration, the same on every backend:
# TensorFlow checks all three; JAX and PyTorch check the reload of the one
# whose arithmetic differs most by backend (bfloat16 compute).
RELOADED = POLICIES if keras.config.backend() == "tensorflow" else POLICIES[2:]


@pytest.mark.parametrize("policy", RELOADED, indirect=True)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_reload_is_bit_identical_and_keeps_the_policy(name, policy, tmp_path):
    keras.utils.set_random_seed(0)
    model, inputs = MODELS[name]()
    expected = np.asarray(keras.ops.convert_to_numpy(model(inputs)))
    policies = layer_policies(model)
    assert policy in dict(policies).values()
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    keras.config.set_dtype_policy("float32")  # loading must not depend on it
    restored = keras.models.load_model(path)
    # (As sets: the order and count of nested layers Keras lists may
    # differ between a built and a loaded model.)
    assert set(layer_policies(restored)) == set(policies)
    actual = np.asarray(keras.ops.convert_to_numpy(restored(inputs)))
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("score", ["dot", "scaled_dot", "general"])
def test_float16_logits_of_unnormalised_features_do_not_overflow(score):
    # Values 0..255 over 16 features: q·k reaches 16 · 255² ≈ 1e6, far past
    # float16's 65504; the logits are computed in float32.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(2, 6, 16)).astype("float32")
    half = ka.Attention(score=score, dtype="mixed_float16")
    full = ka.Attention(score=score)
    half(x, x), full(x, x)
    full.set_weights(half.get_weights())
    out16, weights16 = half(x, x, return_attention_scores=True)
    out32, weights32 = full(x, x, return_attention_scores=True)
    weights16 = np.asarray(weights16)
    assert np.isfinite(weights16).all()
    np.testing.assert_allclose(weights16.sum(-1), 1.0, atol=1e-3)
    np.testing.assert_allclose(weights16, np.asarray(weights32), atol=2e-2)
    assert np.isfinite(np.asarray(out16, "float32")).all()


def test_float16_multi_head_dot_logits_do_not_overflow():
    x = np.random.default_rng(1).integers(0, 256, (2, 6, 16)).astype("float32")
    layer = ka.MultiHeadAttention(
        1, 16, kernel_initializer=keras.initializers.Constant(0.25),
        use_bias=False, dtype="mixed_float16", score="dot",
    )  # fmt: skip  # q·k up to 16 · (16 · 255 / 4)² ≈ 1.7e7
    _, weights = layer(x, x, return_attention_scores=True)
    weights = np.asarray(weights)
    assert np.isfinite(weights).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-3)
