"""Tests of BahdanauAttention, LuongAttention and AttentionDecoder."""

import keras
import numpy as np
import pytest

from keras_attention.layers import rnn
from keras_attention.layers.rnn import AttentionDecoder
from keras_attention.layers.rnn import BahdanauAttention
from keras_attention.layers.rnn import LuongAttention
from tests.testing import check_layer

rng = np.random.default_rng(0)
QUERY = rng.normal(size=(2, 4)).astype("float32")
MEMORY = rng.normal(size=(2, 5, 6)).astype("float32")
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)


def softmax(scores, mask):
    scores = np.where(mask, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def check_against(layer, scores):
    """Context and alignments of `layer` match NumPy's, given the scores."""
    context, alignments = layer(QUERY, MEMORY, memory_mask=MASK)
    expected = softmax(scores, MASK)  # (B, S)
    np.testing.assert_allclose(np.asarray(alignments), expected, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(context),
        np.einsum("bs,bsd->bd", expected, MEMORY),
        atol=1e-5,
    )


@pytest.mark.parametrize("normalize", [False, True])
def test_bahdanau_matches_numpy(normalize):
    layer = BahdanauAttention(units=7, normalize=normalize)
    layer(QUERY, MEMORY)
    score = layer.score
    w_q, w_k, v = (
        np.asarray(w) for w in (score.query_kernel, score.key_kernel, score.v)
    )
    hidden = (QUERY @ w_q)[:, None, :] + MEMORY @ w_k  # (B, S, U)
    if normalize:
        hidden = hidden + np.asarray(score.b)
        v = np.asarray(score.g) * v / np.linalg.norm(v)
    check_against(layer, np.tanh(hidden) @ v)


@pytest.mark.parametrize("scale", [False, True])
def test_luong_general_matches_numpy(scale):
    layer = LuongAttention(score="general", scale=scale)
    layer(QUERY, MEMORY)
    if scale:
        layer.scale_weight.assign(1.7)
    w = np.asarray(layer.score.kernel)  # (dq, d)
    scores = np.einsum("bq,qd,bsd->bs", QUERY, w, MEMORY)
    check_against(layer, scores * (1.7 if scale else 1.0))


def test_luong_dot_concat_location_match_numpy():
    memory = MEMORY[..., :4]
    layer = LuongAttention(score="dot")
    context, alignments = layer(QUERY, memory, memory_mask=MASK)
    expected = softmax(np.einsum("bq,bsq->bs", QUERY, memory), MASK)
    np.testing.assert_allclose(np.asarray(alignments), expected, atol=1e-5)

    layer = LuongAttention(units=3, score="concat")
    layer(QUERY, MEMORY)
    s = layer.score
    hidden = (QUERY @ np.asarray(s.query_kernel))[
        :, None
    ] + MEMORY @ np.asarray(s.key_kernel)
    check_against(layer, np.tanh(hidden) @ np.asarray(s.v))

    layer = LuongAttention(score="location", max_length=8)
    layer(QUERY, MEMORY)
    check_against(layer, (QUERY @ np.asarray(layer.score.kernel))[:, :5])


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (BahdanauAttention, {"units": 8, "normalize": True}),
        (LuongAttention, {"score": "general", "scale": True}),
        (LuongAttention, {"score": "location", "max_length": 5}),
    ],
)
def test_mechanisms_serialize_and_save(cls, kwargs):
    check_layer(cls, kwargs, [QUERY, MEMORY], (2, 6))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
@pytest.mark.parametrize("attention_output", ["concat", "residual"])
def test_decoder_layer_contract(cell, attention, attention_output):
    inputs = rng.normal(size=(2, 3, 4)).astype("float32")
    check_layer(
        AttentionDecoder,
        {
            "units": 8,
            "attention": attention,
            "cell": cell,
            "attention_output": attention_output,
        },
        [inputs, MEMORY],
        (2, 3, 8),
    )


def layer_norm(x, epsilon=1e-3):  # keras's default epsilon, unit gain
    centred = x - x.mean(-1, keepdims=True)
    return centred / np.sqrt(centred.var(-1, keepdims=True) + epsilon)


@pytest.mark.parametrize("attention_output", ["concat", "residual"])
def test_attentional_output_matches_numpy(attention_output):
    decoder = AttentionDecoder(
        4,
        attention="luong",
        attention_output=attention_output,
        input_feeding=False,
        return_alignments=True,
    )
    inputs = rng.normal(size=(2, 3, 4)).astype("float32")
    outputs, alignments = decoder(inputs, MEMORY, memory_mask=MASK)
    # The cell's outputs h_t: without input feeding nothing feeds back into
    # the cell, so the same GRU cell run over the inputs gives them.
    gru = keras.layers.RNN(decoder.cell, return_sequences=True)
    hidden = np.asarray(gru(inputs))  # (B, T, 4)
    context = np.einsum("bts,bsd->btd", np.asarray(alignments), MEMORY)
    kernel = np.asarray(decoder.attention_layer.kernel)
    if attention_output == "concat":
        expected = np.tanh(np.concatenate([hidden, context], -1) @ kernel)
    else:
        expected = layer_norm(hidden + context @ kernel)
    np.testing.assert_allclose(np.asarray(outputs), expected, atol=1e-5)


def test_residual_output_has_the_cells_size():
    decoder = AttentionDecoder(
        4, attention_output="residual", attention_layer_size=3
    )
    with pytest.raises(ValueError, match="attention_layer_size"):
        decoder(np.ones((2, 3, 4)), MEMORY)
    with pytest.raises(ValueError, match="attention_output"):
        AttentionDecoder(4, attention_output="sum")


def decoder_outputs(decoder, inputs, memory, mask, **kwargs):
    outputs = decoder(inputs, memory, memory_mask=mask, **kwargs)
    return [np.asarray(x) for x in keras.tree.flatten(outputs)]


@pytest.mark.parametrize(
    "attention",
    [
        "bahdanau",
        "luong",
        LuongAttention(score="concat"),
        LuongAttention(score="location", max_length=5),
    ],
)
def test_alignments_sum_to_one_over_unpadded_positions(attention):
    decoder = AttentionDecoder(6, attention=attention, return_alignments=True)
    inputs = rng.normal(size=(2, 4, 3)).astype("float32")
    _, alignments = decoder_outputs(decoder, inputs, MEMORY, MASK)
    assert alignments.shape == (2, 4, 5)
    np.testing.assert_array_equal(alignments[0, :, 3:], 0.0)
    np.testing.assert_allclose(alignments.sum(-1), np.ones((2, 4)), atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padded_memory_content_cannot_change_outputs(cell):
    decoder = AttentionDecoder(
        6, cell=cell, return_alignments=True, return_state=True
    )
    inputs = rng.normal(size=(2, 4, 3)).astype("float32")
    before = decoder_outputs(decoder, inputs, MEMORY, MASK)
    noisy = MEMORY.copy()
    noisy[0, 3:] = rng.normal(size=(2, 6)) * 1e4  # only padded positions
    after = decoder_outputs(decoder, inputs, noisy, MASK)
    for x, y in zip(before, after):
        np.testing.assert_array_equal(x, y)


def test_mask_of_a_masked_memory_is_used_automatically():
    source = keras.Input((None,), dtype="int32")
    target = keras.Input((None, 3))
    memory = keras.layers.Embedding(10, 6, mask_zero=True)(source)
    _, alignments = AttentionDecoder(5, return_alignments=True)(target, memory)
    model = keras.Model([source, target], alignments)
    ids = np.array([[4, 5, 6, 0, 0], [1, 2, 3, 4, 5]])
    weights = np.asarray(model([ids, np.ones((2, 2, 3), "float32")]))
    np.testing.assert_array_equal(weights[0, :, 3:], 0.0)
    np.testing.assert_allclose(weights.sum(-1), np.ones((2, 2)), atol=1e-6)


@pytest.mark.parametrize(
    "input_feeding, attention_output",
    [(True, "concat"), (False, "concat"), (True, "residual")],
)
def test_step_by_step_equals_full_sequence(input_feeding, attention_output):
    size = 5 if attention_output == "concat" else 6
    decoder = AttentionDecoder(
        6,
        cell="lstm",
        attention_layer_size=size,
        attention_output=attention_output,
        input_feeding=input_feeding,
        return_alignments=True,
        return_state=True,
    )
    inputs = rng.normal(size=(2, 4, 3)).astype("float32")
    outputs, alignments, final = decoder(inputs, MEMORY, memory_mask=MASK)
    assert outputs.shape == (2, 4, size)
    state = decoder.get_initial_state(2)
    keys = decoder.project_memory(MEMORY)
    for t in range(4):
        output, weights, state = decoder.step(
            inputs[:, t], state, MEMORY, keys, MASK
        )
        np.testing.assert_allclose(output, outputs[:, t], atol=1e-5)
        np.testing.assert_allclose(weights, alignments[:, t], atol=1e-6)
    for x, y in zip(state, final):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_memory_is_projected_once_per_sequence(monkeypatch):
    decoder = AttentionDecoder(6)
    inputs = rng.normal(size=(2, 7, 3)).astype("float32")
    decoder(inputs, MEMORY)
    calls = []
    project = decoder.attention.project_memory

    def counting(memory):
        calls.append(1)
        return project(memory)

    monkeypatch.setattr(decoder.attention, "project_memory", counting)
    decoder(inputs, MEMORY)  # eager: the loop body runs 7 times
    assert len(calls) == 1


def test_initial_state_and_custom_cells():
    cell = keras.layers.StackedRNNCells(
        [keras.layers.GRUCell(6), keras.layers.GRUCell(6)]
    )
    decoder = AttentionDecoder(6, cell=cell, return_state=True)
    inputs = rng.normal(size=(2, 3, 3)).astype("float32")
    states = [rng.normal(size=(2, 6)).astype("float32") for _ in range(2)]
    outputs, final = decoder(inputs, MEMORY, initial_state=states)
    assert outputs.shape == (2, 3, 6) and len(final) == 3  # 2 cells + a_t
    zero, _ = decoder(inputs, MEMORY)
    assert not np.allclose(outputs, zero)
    # A full decoder state continues where the last call stopped.
    more, _ = decoder(inputs, MEMORY, initial_state=final)
    assert more.shape == (2, 3, 6)
    clone = AttentionDecoder.from_config(decoder.get_config())
    assert isinstance(clone.cell, keras.layers.StackedRNNCells)


@pytest.mark.parametrize("attention_output", ["concat", "residual"])
def test_mixed_precision_outputs_are_finite_and_alignments_float32(
    attention_output,
):
    decoder = AttentionDecoder(
        6,
        attention_output=attention_output,
        return_alignments=True,
        dtype="mixed_float16",
    )
    outputs, alignments = decoder(
        np.ones((2, 3, 3), "float16"), MEMORY.astype("float16"), MASK
    )
    assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
    assert keras.backend.standardize_dtype(alignments.dtype) == "float32"
    assert np.all(np.isfinite(np.asarray(outputs, "float32")))
    np.testing.assert_allclose(np.asarray(alignments).sum(-1), 1.0, atol=1e-3)


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="location"):
        LuongAttention(score="cosine")
    with pytest.raises(ValueError, match="max_length"):
        LuongAttention(score="location")
    with pytest.raises(ValueError, match="attention"):
        AttentionDecoder(4, attention="nope")
    with pytest.raises(ValueError, match="cell"):
        AttentionDecoder(4, cell="rnn")
    with pytest.raises(ValueError, match="memory.shape"):
        AttentionDecoder(4)(np.ones((2, 3, 3)), np.ones((2, 5)))
    assert rnn.get_mechanism("bahdanau", 4).units == 4


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_the_scores_own_projection_runs_once_per_sequence(
    attention, monkeypatch
):
    # Both mechanisms project the memory with their score's `project_key`
    # (no copy of its math), once per call and not once per step.
    decoder = AttentionDecoder(6, attention=attention)
    inputs = rng.normal(size=(2, 7, 3)).astype("float32")
    expected = np.asarray(decoder(inputs, MEMORY))
    calls = []
    project = decoder.attention.score.project_key

    def counting(memory):
        calls.append(1)
        return project(memory)

    monkeypatch.setattr(decoder.attention.score, "project_key", counting)
    np.testing.assert_allclose(decoder(inputs, MEMORY), expected, atol=1e-6)
    assert len(calls) == 1


def test_luong_general_under_mixed_float16_equals_the_general_score():
    # q·Wm reaches ~1e5 here, past float16's 65504: the `General` score
    # computes it in float32, and so must the mechanism that projects the
    # memory once with it.
    big = np.random.default_rng(4)
    query = (big.normal(size=(2, 16)) * 200).astype("float32")
    memory = (big.normal(size=(2, 5, 16)) * 200).astype("float32")
    layer = LuongAttention(score="general", dtype="mixed_float16")
    context, alignments = layer(query, memory, memory_mask=MASK)
    half_query, half_memory = query.astype("float16"), memory.astype("float16")
    scores = np.asarray(layer.score(half_query[:, None], half_memory))[:, 0]
    assert np.abs(scores).max() > 65504  # the float16 overflow is real
    expected = softmax(scores.astype("float64"), MASK)  # (B, S)
    np.testing.assert_allclose(np.asarray(alignments), expected, atol=1e-3)
    np.testing.assert_allclose(
        np.asarray(context, "float32"),
        np.einsum("bs,bsd->bd", expected, half_memory.astype("float64")),
        rtol=1e-2,
        atol=1e-1,
    )


def test_decoder_memory_of_another_batch_names_memory():
    inputs = rng.normal(size=(1, 3, 3)).astype("float32")
    message = r"argument `memory`: expected the batch size 1 of `inputs`"
    with pytest.raises(ValueError, match=message):
        AttentionDecoder(4)(inputs, MEMORY)
    with pytest.raises(ValueError, match="batch size 2 of `query`"):
        LuongAttention()(QUERY, MEMORY[:1])


def test_rnn_classes_map_the_cell_names_for_decoder_and_seq2seq():
    assert rnn.rnn_classes("gru")[:2] == (
        keras.layers.GRUCell,
        keras.layers.GRU,
    )
    assert rnn.rnn_classes("lstm")[2] == 2  # h and c
    assert isinstance(rnn.get_cell("lstm", 3), keras.layers.LSTMCell)
    with pytest.raises(ValueError, match="argument `cell`"):
        rnn.rnn_classes("rnn")
