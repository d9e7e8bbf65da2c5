"""Bad arguments and shapes get an error that names the argument.

Every case asserts the error type and that the message names what was
wrong, in keras's form (`... argument `name` ... Received: name=...`).
"""

import keras
import numpy as np
import pytest

import keras_attention as ka
from keras_attention import decoding
from keras_attention import scores
from keras_attention.models import Seq2Seq
from keras_attention.models import Transformer
from keras_attention.models import TransformerClassifier

pytestmark = pytest.mark.backend_neutral  # see conftest.py

rng = np.random.default_rng(3)
Q = rng.normal(size=(2, 5, 6)).astype("float32")
V = rng.normal(size=(2, 7, 6)).astype("float32")
BAD_INTS = [0, -2, 1.5, "4", True, None]
BAD_RATES = [-0.1, 1.0, 1.5, "0.1", float("nan")]

SEQ2SEQ = dict(source_vocab_size=10, target_vocab_size=10)
TRANSFORMER = dict(source_vocab_size=10, target_vocab_size=10)
CLASSIFIER = dict(vocab_size=10, num_classes=2)


def cases():
    """`(id, factory, kwargs, argument name)` of bad constructor calls."""
    layers = {
        "mha": (ka.MultiHeadAttention, dict(num_heads=2, key_dim=4)),
        "encoder_block": (
            ka.TransformerEncoderBlock,
            dict(num_heads=2, intermediate_dim=8),
        ),
        "decoder_stack": (
            ka.TransformerDecoder,
            dict(num_layers=1, num_heads=2, intermediate_dim=8),
        ),
        "seq2seq": (Seq2Seq, SEQ2SEQ),
        "transformer": (Transformer, TRANSFORMER),
        "classifier": (TransformerClassifier, CLASSIFIER),
        "decoder": (ka.AttentionDecoder, dict(units=4)),
        "embedding": (
            ka.TokenAndPositionEmbedding,
            dict(vocab_size=10, embedding_dim=4),
        ),
    }
    ints = {
        "mha": ["num_heads", "key_dim", "value_dim", "num_key_value_heads",
                "chunk_size", "sliding_window"],
        "encoder_block": ["num_heads", "intermediate_dim", "key_dim",
                          "chunk_size"],
        "decoder_stack": ["num_layers", "num_heads", "intermediate_dim"],
        "seq2seq": ["source_vocab_size", "target_vocab_size",
                    "embedding_dim", "units", "num_layers"],
        "transformer": ["source_vocab_size", "target_vocab_size",
                        "num_layers", "hidden_dim", "num_heads",
                        "intermediate_dim", "max_length"],
        "classifier": ["vocab_size", "num_classes", "num_layers",
                       "hidden_dim", "num_heads", "intermediate_dim",
                       "max_length"],
        "decoder": ["units", "attention_layer_size"],
        "embedding": ["vocab_size", "embedding_dim", "max_length"],
    }  # fmt: skip
    optional = {"value_dim", "num_key_value_heads", "chunk_size",
                "sliding_window", "key_dim", "attention_layer_size",
                "max_length"}  # fmt: skip
    for layer, names in ints.items():
        factory, base = layers[layer]
        for name in names:
            for bad in BAD_INTS:
                if bad is None and (
                    name in optional
                    and layer != "transformer"
                    and layer != "classifier"
                ):
                    continue  # None is the documented default
                yield (
                    f"{layer}-{name}-{bad!r}",
                    factory,
                    {**base, name: bad},
                    name,
                )
        if layer in (
            "mha",
            "encoder_block",
            "seq2seq",
            "transformer",
            "classifier",
        ):
            for bad in BAD_RATES:
                yield (
                    f"{layer}-dropout-{bad!r}",
                    factory,
                    {**base, "dropout": bad},
                    "dropout",
                )
    # Numbers, choices and relations.
    mha, block = ka.MultiHeadAttention, ka.TransformerEncoderBlock
    more = [
        (ka.Attention, {"temperature": 0}, "temperature"),
        (ka.Attention, {"temperature": float("inf")}, "temperature"),
        (ka.Attention, {"score": "nope"}, "nope"),
        (mha, dict(num_heads=6, key_dim=4, num_key_value_heads=4),
         "num_key_value_heads"),
        (mha, dict(num_heads=2, key_dim=4, rotary_max_wavelength=0),
         "rotary_max_wavelength"),
        (mha, dict(num_heads=2, key_dim=3, rotary_max_wavelength=100),
         "key_dim"),
        (mha, dict(num_heads=2, key_dim=4, output_shape=8.0), "output_shape"),
        (ka.RotaryEmbedding, {"max_wavelength": 0}, "max_wavelength"),
        (ka.RotaryEmbedding, {"max_wavelength": -5}, "max_wavelength"),
        (ka.SinusoidalPositionalEncoding, {"max_wavelength": 0},
         "max_wavelength"),
        (ka.LearnedPositionalEmbedding, {"max_length": 2.5}, "max_length"),
        (ka.TokenAndPositionEmbedding, dict(vocab_size=10, embedding_dim=4,
                                            positional="rope"), "positional"),
        (ka.BahdanauAttention, {"units": 0}, "units"),
        (ka.LuongAttention, {"score": "cosine"}, "score"),
        (ka.AttentionDecoder, dict(units=4, attention="nope"), "attention"),
        (ka.AttentionDecoder, dict(units=4, cell="rnn"), "cell"),
        (block, dict(num_heads=2, intermediate_dim=8, layer_norm_epsilon=0),
         "layer_norm_epsilon"),
        (Seq2Seq, {**SEQ2SEQ, "cell": "rnn"}, "cell"),
        (Seq2Seq, {**SEQ2SEQ, "dropuot": 0.3}, "dropuot"),
        (Transformer, {**TRANSFORMER, "hidden_dim": 10, "num_heads": 4},
         "num_heads"),
        (Transformer, {**TRANSFORMER, "positional": "rope"}, "positional"),
        (TransformerClassifier, {**CLASSIFIER, "pooling": "max"}, "pooling"),
        (scores.ScaledDot, {"scale": 0}, "scale"),
        (scores.Additive, {"units": 1.5}, "units"),
        (scores.Cosine, {"initial_scale": 0}, "initial_scale"),
        (scores.Distance, {"kernel": "laplace"}, "kernel"),
        (scores.Distance, {"bandwidth": float("nan")}, "bandwidth"),
        (scores.Location, {"max_length": 0}, "max_length"),
    ]  # fmt: skip
    for i, (factory, kwargs, name) in enumerate(more):
        yield f"{factory.__name__}-{name}-{i}", factory, kwargs, name


CASES = list(cases())


@pytest.mark.parametrize(
    "factory, kwargs, name", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_constructor_argument_names_it(factory, kwargs, name):
    with pytest.raises(ValueError, match=f"`?{name}`?"):
        factory(**kwargs)


# --- Call-time shapes (checked when the call is traced) -------------------


def mha(**kwargs):
    layer = ka.MultiHeadAttention(2, 4, **kwargs)
    layer(Q, V)
    return layer


CALLS = {
    "mha_batch_mismatch": (lambda: mha()(Q, V[:1]), "value"),
    "mha_value_mask_length": (
        lambda: mha()(Q, V, value_mask=np.ones((2, 8), bool)),
        "value_mask",
    ),
    "mha_chunked_value_mask_length": (
        lambda: mha(chunk_size=3)(Q, V, value_mask=np.ones((2, 8), bool)),
        "value_mask",
    ),
    "mha_query_mask": (
        lambda: mha()(Q, V, query_mask=np.ones((2, 4), bool)),
        "query_mask",
    ),
    "mha_attention_mask": (
        lambda: mha()(Q, V, attention_mask=np.ones((2, 5, 6), bool)),
        "attention_mask",
    ),
    "mha_key_length": (lambda: mha()(Q, V, key=V[:, :3]), "key"),
    "mha_cache_shape": (
        lambda: mha()(
            Q[:, :1], Q[:, :1], cache=np.zeros((2, 2, 6, 3, 4), "float32"),
            cache_update_index=0,
        ),
        "cache",
    ),
    "mha_index_past_cache": (
        lambda: mha()(
            Q[:, :1], Q[:, :1], cache=np.zeros((2, 2, 6, 2, 4), "float32"),
            cache_update_index=6,
        ),
        "cache_update_index",
    ),
    "mha_negative_index": (
        lambda: mha()(
            Q[:, :1], Q[:, :1], cache=np.zeros((2, 2, 6, 2, 4), "float32"),
            cache_update_index=-1,
        ),
        "cache_update_index",
    ),
    "mha_index_without_cache": (
        lambda: mha()(Q, Q, cache_update_index=0), "cache_update_index"
    ),
    "attention_feature_size": (
        lambda: (lambda a: (a(Q, V), a(Q[..., :4], V)))(
            ka.Attention(score="general")
        ),
        "query",
    ),
    "attention_batch": (lambda: ka.Attention()(Q, V[:1]), "value"),
    "attention_rank": (lambda: ka.Attention()(Q[0], V[0]), "query"),
    "location_too_long": (
        lambda: (lambda a: (a(Q, V[:, :4]), a(Q, V)))(
            ka.Attention(score=scores.Location(max_length=4))
        ),
        "max_length",
    ),
    "pooling_mask": (
        lambda: ka.AttentionPooling()(V, mask=np.ones((2, 6), bool)),
        "value_mask",
    ),
    "bahdanau_memory_mask": (
        lambda: ka.BahdanauAttention(4)(
            Q[:, 0], V, memory_mask=np.ones((2, 3), bool)
        ),
        "memory_mask",
    ),
    "decoder_batch": (
        lambda: ka.AttentionDecoder(4)(Q[:1], V), "memory"
    ),
    "encoder_block_mask": (
        lambda: ka.TransformerEncoderBlock(2, 8)(
            V, mask=np.ones((2, 5), bool)
        ),
        "mask",
    ),
    "encoder_block_rank": (
        lambda: ka.TransformerEncoderBlock(2, 8)(V[0]), "inputs"
    ),
    "decoder_block_memory_mask": (
        lambda: ka.TransformerDecoderBlock(2, 8)(
            Q, V, encoder_outputs_mask=np.ones((2, 3), bool)
        ),
        "encoder_outputs_mask",
    ),
    "decoder_stack_stacked_cache": (
        lambda: ka.TransformerDecoder(2, num_heads=2, intermediate_dim=8)(
            Q[:, :1], cache=np.zeros((2, 2, 2, 4, 2, 3), "float32"),
            cache_update_index=0,
        ),
        "cache",
    ),
    "learned_positions_too_long": (
        lambda: ka.LearnedPositionalEmbedding(4)(V), "max_length"
    ),
    "learned_positions_start_index": (
        lambda: ka.LearnedPositionalEmbedding(8)(V[:, :2], start_index=7),
        "max_length",
    ),
    "rotary_rank": (lambda: ka.RotaryEmbedding()(V[0]), "inputs"),
    "float_token_ids": (
        lambda: ka.TokenAndPositionEmbedding(10, 4)(np.array([[1.7, 2.0]])),
        "inputs",
    ),
    "negative_token_ids": (
        lambda: ka.TokenAndPositionEmbedding(10, 4)(np.array([[-1, 2]])),
        "inputs",
    ),
    "token_ids_past_vocabulary": (
        lambda: ka.TokenAndPositionEmbedding(10, 4)(np.array([[12, 2]])),
        "inputs",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CALLS))
def test_bad_call_names_the_argument(name):
    call, argument = CALLS[name]
    with pytest.raises(ValueError, match=f"`?{argument}`?"):
        call()


# --- Models and generation -------------------------------------------------


@pytest.fixture(scope="module")
def transformer():
    return Transformer(10, 12, num_layers=1, hidden_dim=8, num_heads=2,
                       intermediate_dim=8, max_length=8,
                       positional="learned")  # fmt: skip


SOURCE = np.array([[4, 5, 2, 0], [6, 2, 0, 0]])
TARGET_IN = np.array([[1, 4], [1, 5]])


@pytest.mark.parametrize(
    "inputs, name",
    [
        ({"source": SOURCE[..., None], "target_in": TARGET_IN}, "source"),
        ({"source": SOURCE + 0.7, "target_in": TARGET_IN}, "source"),
        ({"source": SOURCE - 5, "target_in": TARGET_IN}, "source"),
        ({"source": SOURCE, "target_in": TARGET_IN + 20}, "target_in"),
        ({"source": SOURCE}, "target_in"),
    ],
)
def test_model_call_checks_its_inputs(transformer, inputs, name):
    with pytest.raises(ValueError, match=name):
        transformer(inputs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_length": 2.5}, "max_length"),
        ({"max_length": 9}, "max_length"),  # beyond the learned positions
        ({"max_length": 3, "method": "beam", "beam_width": 1.5}, "beam_width"),
        ({"max_length": 3, "method": "sample", "top_k": 13}, "top_k"),
        ({"max_length": 3, "seed": 1.5}, "seed"),
        ({"max_length": 3, "source": SOURCE * 1.7}, "source"),
        ({"max_length": 3, "source": -SOURCE}, "source"),
        ({"max_length": 3, "source": SOURCE[0]}, "source"),
        ({"max_length": 3, "source": SOURCE[:, :0]}, "source"),
        ({"max_length": 3, "method": "sample", "seed": 2**31}, "seed"),
    ],
)
def test_generate_checks_its_arguments(transformer, kwargs, name):
    kwargs = {"source": SOURCE, **kwargs}
    with pytest.raises(ValueError, match=name):
        transformer.generate(**kwargs)


def test_decoding_functions_check_their_arguments():
    def step(tokens, state, index):
        return keras.ops.one_hot(tokens, 5), state

    start = np.array([1, 1])
    with pytest.raises(ValueError, match="max_length"):
        decoding.greedy_search(step, (), start, 0)
    with pytest.raises(ValueError, match="beam_width"):
        decoding.beam_search(step, (), start, 3, beam_width=0)
    with pytest.raises(ValueError, match="top_k"):
        decoding.sample(step, (), start, 3, top_k=6, seed=0)
    with pytest.raises(ValueError, match="temperature"):
        decoding.sample(step, (), start, 3, temperature=-1.0)


# --- keras's own MultiHeadAttention tests (keras v3.15.1) -----------------


@pytest.mark.parametrize(
    "query_dims, value_dims, key_dims, output_shape",
    [
        ((4, 8), (2, 8), None, None),
        ((4, 8), (2, 8), (2, 3), None),
        ((4, 8), (2, 8), None, (3, 4)),
        ((4, 8), (2, 8), (2, 3), (1, 5)),
        ((4, 2, 3, 8), (1, 1, 5, 8), (1, 1, 5, 2), None),
        ((4, 2, 3, 8), (1, 1, 5, 8), (1, 1, 5, 2), (3, 2)),
        ((4, 2, 3, 8), (4, 2, 3, 7), (4, 2, 3, 8), None),
    ],
)
def test_keras_compute_output_shape(
    query_dims, value_dims, key_dims, output_shape
):
    layer = ka.MultiHeadAttention(
        num_heads=2, key_dim=2, value_dim=2, output_shape=output_shape
    )
    query_shape = (7,) + query_dims
    value_shape = (7,) + value_dims
    key_shape = (7,) + key_dims if key_dims else None
    output = layer(
        query=np.ones(query_shape),
        value=np.ones(value_shape),
        key=np.ones(key_shape) if key_shape else None,
    )
    assert output.shape == layer.compute_output_shape(
        query_shape, value_shape, key_shape
    )
    assert output.shape == layer.compute_output_shape(
        list(query_shape),
        list(value_shape),
        list(key_shape) if key_shape else None,
    )


@pytest.mark.parametrize(
    "query_shape, value_shape, key_shape",
    [
        # keras's "query_value_dim_mismatch" case is left out on purpose:
        # a value size other than the query's is allowed (see the docs).
        ((2, 4, 8), (2, 2, 8), (2, 1, 7)),
        ((2, 4, 2, 3, 8), (2, 1, 1, 5, 8), (2, 1, 15, 5, 2)),
    ],
)
def test_keras_shape_mismatch_error(query_shape, value_shape, key_shape):
    layer = ka.MultiHeadAttention(num_heads=4, key_dim=2, value_dim=2)
    with pytest.raises(ValueError, match="must be equal"):
        layer.compute_output_shape(query_shape, value_shape, key_shape)
    with pytest.raises(ValueError, match="must be equal"):
        layer(np.ones(query_shape), np.ones(value_shape), np.ones(key_shape))


def test_query_value_sizes_may_differ():
    layer = ka.MultiHeadAttention(num_heads=2, key_dim=2)
    assert layer(np.ones((2, 4, 8)), np.ones((2, 2, 7))).shape == (2, 4, 8)


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_keras_invalid_scalar_args_rejected(bad):
    with pytest.raises(ValueError, match="argument `num_heads`"):
        ka.MultiHeadAttention(num_heads=bad, key_dim=4)
    with pytest.raises(ValueError, match="argument `key_dim`"):
        ka.MultiHeadAttention(num_heads=4, key_dim=bad)
    with pytest.raises(ValueError, match="argument `value_dim`"):
        ka.MultiHeadAttention(num_heads=4, key_dim=4, value_dim=bad)
    ka.MultiHeadAttention(num_heads=4, key_dim=4, value_dim=None)


def test_keras_sliding_window_validation_and_serialization():
    for bad in (0, -3):
        with pytest.raises(ValueError, match="sliding_window"):
            ka.MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=bad)
    layer = ka.MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=5)
    restored = ka.MultiHeadAttention.from_config(layer.get_config())
    assert restored._sliding_window == 5


def test_keras_output_shape_as_int_and_tuple():
    x = np.ones((2, 4, 16), "float32")
    assert ka.MultiHeadAttention(2, 16, output_shape=8)(x, x).shape == (2, 4, 8)
    out = ka.MultiHeadAttention(2, 16, output_shape=(8, 8))(x, x)
    assert out.shape == (2, 4, 8, 8)


def test_keras_masking_with_different_shapes():
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    layer = ka.MultiHeadAttention(num_heads=2, key_dim=4)
    mask = np.tril(np.ones((5, 5)))
    outputs = [
        layer(x, x, attention_mask=m)
        for m in (mask, np.tile(mask[None], (2, 1, 1)),
                  np.tile(mask[None, None], (2, 2, 1, 1)))
    ]  # fmt: skip
    for output in outputs[1:]:
        np.testing.assert_allclose(output, outputs[0], atol=1e-6)


def test_keras_symbolic_return_attention_scores():
    layer = ka.MultiHeadAttention(num_heads=4, key_dim=2)
    x = keras.Input(batch_shape=(2, 3, 5))
    symbolic = layer(x, x, return_attention_scores=True)
    eager = layer(np.ones((2, 3, 5)), np.ones((2, 3, 5)),
                  return_attention_scores=True)  # fmt: skip
    assert [s.shape for s in symbolic] == [e.shape for e in eager]


# --- Empty batches and text -------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_empty_batch_works_dense_and_chunked(chunk_size):
    layer = ka.MultiHeadAttention(2, 4, chunk_size=chunk_size)
    x = np.zeros((0, 5, 6), "float32")
    assert layer(x, x, use_causal_mask=True).shape == (0, 5, 6)
