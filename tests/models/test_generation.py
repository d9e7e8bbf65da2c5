"""Tests of the one `generate`: options, compilation, both models alike."""

import keras
import numpy as np
import pytest

from keras_attention.constants import END_ID
from keras_attention.models import Seq2Seq
from keras_attention.models import Transformer
from keras_attention.models.generation import DecodingOptions
from keras_attention.models.generation import never_reserved
from tests.test_decoding import numpy_controls

SOURCE = np.array([[5, 6, 7, 8, 0, 0], [4, 9, 4, 9, 4, 9], [3, 0, 0, 0, 0, 0]])


def seq2seq():
    keras.utils.set_random_seed(0)
    return Seq2Seq(12, 10, embedding_dim=6, units=5)


def transformer():
    keras.utils.set_random_seed(0)
    return Transformer(
        12, 10, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16
    )


MODELS = {"seq2seq": seq2seq, "transformer": transformer}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    return MODELS[request.param]()


def test_generate_equals_its_uncompiled_function(model):
    for options in (
        {},
        {"method": "beam", "beam_width": 3},
        {"method": "sample", "seed": 5, "top_p": 0.9},
    ):
        expected = model.generate_function(SOURCE, 5, **options)
        for _ in range(3):  # PyTorch: eager, capturing, captured
            np.testing.assert_array_equal(
                model.generate(SOURCE, 5, **options), expected
            )


def test_one_compiled_function_serves_every_batch_and_source_length(model):
    model.generate(SOURCE, 4)
    functions = dict(model._generate_functions)
    for batch, length in ((1, 3), (5, 9), (2, 6)):
        source = np.random.default_rng(batch).integers(3, 12, (batch, length))
        assert model.generate(source, 4).shape == (batch, 4)
    assert model._generate_functions == functions  # nothing new compiled
    if keras.config.backend() == "tensorflow":  # and nothing retraced
        function = functions[(4, DecodingOptions(), False)]
        assert function.experimental_get_tracing_count() == 1


@pytest.mark.skipif(
    keras.config.backend() not in ("jax", "torch"),
    reason="TensorFlow traces once for every shape",
)
def test_compiles_once_per_length_bucket(model):
    """Sources padded to their bucket (batch to a power of two, length to
    one of at least 8): one compilation (JAX) or one pair of captured
    graphs (PyTorch) serves batches 3-4 and lengths 5-8. That the padding
    changes no token is `test_generate_equals_its_uncompiled_function`
    (SOURCE, (3, 6), is padded to (4, 8)) and, on JAX (whose suite runs
    this test only), `tests/test_cross_backend.py`: the tokens of
    TensorFlow, which pads nothing. Here the attention is cut back to the
    real shape."""
    rng = np.random.default_rng(0)
    for options in ({}, {"method": "beam", "beam_width": 2}):
        for _ in range(2):  # PyTorch captures on a bucket's second call
            model.generate(SOURCE, 4, **options)
        key = (4, DecodingOptions(**options), False)
        compiled = model._generate_functions[key]
        before = compiled.compilations()
        assert before > 0
        for batch, length in ((3, 5), (4, 8), (4, 6), (3, 7)):
            source = rng.integers(3, 12, (batch, length))
            assert model.generate(source, 4, **options).shape == (batch, 4)
        assert compiled.compilations() == before  # SOURCE's bucket, (4, 8)
        for _ in range(2):
            model.generate(rng.integers(3, 12, (3, 9)), 4, **options)
        assert compiled.compilations() > before  # bucket (4, 16)
    source = SOURCE[:1, :3]
    _, attention = model.generate(source, 3, return_attention=True)
    _, expected = model.generate_function(source, 3, return_attention=True)
    assert attention.shape == (1, 3, 3)
    np.testing.assert_allclose(attention, expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_generate_follows_new_weights(name):
    # Compiled (or captured) functions take the weights as inputs: after
    # the weights change, generate decodes with the new ones.
    model = MODELS[name]()
    for options in ({}, {"method": "beam", "beam_width": 2}):
        model.generate(SOURCE, 5, **options)
        model.generate(SOURCE, 5, **options)  # captured on PyTorch by now
    rng = np.random.default_rng(1)
    model.set_weights(
        [rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    for options in ({}, {"method": "beam", "beam_width": 2}):
        np.testing.assert_array_equal(
            model.generate(SOURCE, 5, **options),
            model.generate_function(SOURCE, 5, **options),
        )


def test_save_and_load_after_compiled_generate(model, tmp_path):
    # Nothing generate keeps (compiled functions, captured graphs) is
    # tracked or saved: the model round-trips and decodes the same.
    for _ in range(2):
        tokens = model.generate(SOURCE, 5)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.generate(SOURCE, 5), tokens)


@pytest.mark.skipif(
    keras.config.backend() != "torch", reason="captures only on PyTorch"
)
def test_a_step_torch_export_cannot_capture_runs_eagerly_with_a_warning():
    # `biased` adds a NumPy vector to the logits: torch.export cannot
    # trace NumPy inside the step.
    model = biased("transformer", {7: 50.0})
    tokens = model.generate(SOURCE, 4)  # eager: a bucket's first call
    with pytest.warns(UserWarning, match="decoding_step` eagerly"):
        np.testing.assert_array_equal(model.generate(SOURCE, 4), tokens)
    assert (np.asarray(tokens) == 7).all()
    np.testing.assert_array_equal(model.generate(SOURCE, 4), tokens)


def test_lengths_beyond_learned_positions_fail_before_tracing():
    model = Transformer(
        12, 10, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=8,
        max_length=6, positional="learned",
    )  # fmt: skip
    with pytest.raises(ValueError, match="`max_length`") as error:
        model.generate(SOURCE, 7)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="source length"):
        model.generate(np.ones((1, 7), "int32"), 3)
    assert not getattr(model, "_generate_functions", None)


def test_seeded_sampling_repeats_and_unseeded_sampling_varies(model):
    first = np.asarray(model.generate(SOURCE, 6, method="sample", seed=3))
    again = np.asarray(model.generate(SOURCE, 6, method="sample", seed=3))
    np.testing.assert_array_equal(first, again)
    draws = {
        np.asarray(
            model.generate(SOURCE, 6, method="sample", temperature=5.0)
        ).tobytes()
        for _ in range(6)
    }
    assert len(draws) > 1  # a new seed per call, not one frozen at tracing


def test_coverage_penalty_works_for_both_models(model):
    tokens = model.generate(
        SOURCE, 6, method="beam", beam_width=3, coverage_penalty=0.5
    )
    assert tuple(tokens.shape) == (3, 6)


def test_step_alignments_equal_teacher_forced_alignments(model):
    # What `decoding_step` returns at each step (used by the coverage
    # penalty) is the attention `return_attention` reports.
    tokens, attention = model.generate(SOURCE, 4, return_attention=True)
    state = model.decoding_state(keras.ops.convert_to_tensor(SOURCE), 4)
    previous = np.ones((3,), "int32")
    for index in range(4):
        _, state, alignments = model.decoding_step(previous, state, index)
        emitted = np.asarray(tokens)[:, index] > 0
        np.testing.assert_allclose(
            np.asarray(alignments)[emitted],
            np.asarray(attention)[:, index][emitted],
            atol=1e-5,
        )
        previous = np.asarray(tokens)[:, index]


@pytest.mark.parametrize(
    "options, name",
    [
        ({"method": "nucleus"}, "method"),
        ({"beam_width": 1.5}, "beam_width"),
        ({"beam_width": 0}, "beam_width"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 1.5}, "top_p"),
        ({"length_penalty": -1.0}, "length_penalty"),
        ({"coverage_penalty": float("nan")}, "coverage_penalty"),
        ({"min_length": -1}, "min_length"),
        ({"min_length": 1.5}, "min_length"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
        ({"no_repeat_ngram_size": "2"}, "no_repeat_ngram_size"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"repetition_penalty": float("inf")}, "repetition_penalty"),
        ({"bad_token_ids": 5}, "bad_token_ids"),
        ({"bad_token_ids": [5.0]}, "bad_token_ids"),
        ({"bad_token_ids": [-2]}, "bad_token_ids"),
    ],
)
def test_bad_options_name_the_argument(options, name):
    with pytest.raises(ValueError, match=name):
        DecodingOptions(**options)


@pytest.mark.parametrize("max_length", [0, -3, 2.5, "4", None])
def test_bad_max_length_names_the_argument(model, max_length):
    with pytest.raises(ValueError, match="max_length"):
        model.generate(SOURCE, max_length)


def test_unknown_option_is_a_type_error(model):
    with pytest.raises(TypeError, match="beam_size"):
        model.generate(SOURCE, 4, beam_size=3)


@pytest.mark.tensorflow_only
def test_generate_function_converts_with_autograph_without_warnings(caplog):
    import tensorflow as tf

    model = Seq2Seq(12, 10, embedding_dim=6, units=5)
    translate = tf.function(lambda source: model.generate_function(source, 3))
    with caplog.at_level("WARNING", logger="tensorflow"):
        translate(tf.constant(SOURCE, "int32"))
    assert "AutoGraph could not transform" not in caplog.text


@pytest.mark.parametrize("function", ["generate", "generate_function"])
def test_empty_source_names_the_argument(model, function):
    # Checked once for both: a (B, 0) source has nothing to attend to.
    with pytest.raises(ValueError, match="argument `source`"):
        getattr(model, function)(SOURCE[:, :0], 4)


@pytest.mark.parametrize("function", ["generate", "generate_function"])
@pytest.mark.parametrize("seed", [1.5, True, 2**31, -(2**31) - 1])
def test_bad_seed_names_the_argument(model, function, seed):
    with pytest.raises(ValueError, match="argument `seed`"):
        getattr(model, function)(SOURCE, 4, method="sample", seed=seed)


def test_unseeded_generate_function_draws_its_seed_reproducibly(model):
    draws = []
    for _ in range(2):
        keras.utils.set_random_seed(7)  # seeds Python's `random` too
        draws.append(
            model.generate_function(SOURCE, 6, method="sample", temperature=5.0)
        )
    np.testing.assert_array_equal(*draws)


# Hugging Face's logit controls through `generate`, for every method.

METHODS = [
    {},
    {"method": "beam", "beam_width": 3},
    {"method": "sample", "seed": 3, "temperature": 2.0},
]


def emitted(row):
    """A row's tokens up to and including its end token."""
    row = list(row)
    return row[: row.index(END_ID) + 1] if END_ID in row else row


def biased(name, bonus):
    """A fresh model whose logits get `bonus` `{id: value}` at every step.

    Untrained models emit what their initial weights (which differ per
    backend) say; a bonus makes the behaviour a control must change certain.
    """
    model = MODELS[name]()
    step = model.decoding_step
    bonus_vector = np.zeros((10,), "float32")
    bonus_vector[list(bonus)] = list(bonus.values())

    def decoding_step(tokens, state, index):
        logits, state, alignments = step(tokens, state, index)
        return logits + bonus_vector, state, alignments

    model.decoding_step = decoding_step
    return model


@pytest.fixture(scope="module", params=sorted(MODELS))
def repeating(request):
    """Token 5 first, the end token last: `[5, 5, ...]` unless controlled."""
    return biased(request.param, {5: 50.0, END_ID: -50.0})


@pytest.fixture(scope="module", params=sorted(MODELS))
def eager_to_end(request):
    """The end token first: it ends at once unless controlled."""
    return biased(request.param, {END_ID: 50.0})


@pytest.mark.parametrize("options", METHODS, ids=str)
def test_no_repeat_ngram_size_one_emits_no_token_twice(repeating, options):
    free = np.asarray(repeating.generate(SOURCE, 8, **options))
    assert (free == 5).all()
    tokens = repeating.generate(SOURCE, 8, no_repeat_ngram_size=1, **options)
    for row in np.asarray(tokens):
        assert len(set(emitted(row))) == len(emitted(row)), row
    assert (np.asarray(tokens)[:, 0] == 5).all()  # the bonus still counts


@pytest.mark.parametrize("options", METHODS, ids=str)
def test_bad_token_ids_never_appear(repeating, options):
    tokens = repeating.generate(SOURCE, 8, bad_token_ids=[5, 7], **options)
    assert not np.isin(np.asarray(tokens), [5, 7]).any()
    assert not (np.asarray(tokens) == END_ID).any()  # still disfavoured


@pytest.mark.parametrize("options", METHODS, ids=str)
def test_min_length_holds_the_end_token_back(eager_to_end, options):
    free = np.asarray(eager_to_end.generate(SOURCE, 6, **options))
    assert (free[:, 0] == END_ID).all()
    tokens = eager_to_end.generate(SOURCE, 6, min_length=4, **options)
    tokens = np.asarray(tokens)
    assert not np.isin(tokens[:, :4], [END_ID, 0]).any()
    assert (tokens[:, 4] == END_ID).all()  # as soon as it may


def test_generate_with_controls_equals_a_numpy_step_by_step_greedy(model):
    controls = {
        "min_length": 3,
        "no_repeat_ngram_size": 2,
        "repetition_penalty": 1.5,
        "bad_token_ids": [9],
    }
    tokens = np.asarray(model.generate(SOURCE, 7, **controls))
    state = model.decoding_state(keras.ops.convert_to_tensor(SOURCE), 7)
    previous, rows = np.ones((3,), "int32"), [[] for _ in SOURCE]
    for index in range(7):
        logits, state, _ = model.decoding_step(previous, state, index)
        logits = np.asarray(never_reserved(logits))
        for row, history in enumerate(rows):
            if END_ID not in history:
                controlled = numpy_controls(
                    logits[row], history, END_ID, **controls
                )
                history.append(int(np.argmax(controlled)))
        previous = np.array([history[-1] for history in rows], "int32")
    expected = [row + [0] * (7 - len(row)) for row in rows]
    np.testing.assert_array_equal(tokens, expected)
    assert not np.array_equal(tokens, model.generate(SOURCE, 7))


def test_controls_are_in_the_compile_cache_key(model):
    model.generate(SOURCE, 5)
    before = set(model._generate_functions)
    for controls in (
        {"bad_token_ids": [5, 7]},
        {"bad_token_ids": (7, 5, 7)},  # the same set: reused
        {"min_length": 2},
        {"min_length": 2},
        {"min_length": 3},
        {"repetition_penalty": 1.2, "no_repeat_ngram_size": 2},
    ):
        model.generate(SOURCE, 5, **controls)
    new = set(model._generate_functions) - before
    assert {options for _, options, _ in new} == {
        DecodingOptions(bad_token_ids=[5, 7]),
        DecodingOptions(min_length=2),
        DecodingOptions(min_length=3),
        DecodingOptions(repetition_penalty=1.2, no_repeat_ngram_size=2),
    }
    if keras.config.backend() == "tensorflow":  # each traced once
        for key in new:
            function = model._generate_functions[key]
            assert function.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("function", ["generate", "generate_function"])
def test_bad_token_ids_beyond_the_vocabulary_fail_before_tracing(
    model, function
):
    before = dict(getattr(model, "_generate_functions", {}))
    with pytest.raises(ValueError, match="argument `bad_token_ids`.*< 10"):
        getattr(model, function)(SOURCE, 4, bad_token_ids=[4, 10])
    assert getattr(model, "_generate_functions", {}) == before
