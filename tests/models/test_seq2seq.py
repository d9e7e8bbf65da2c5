"""Tests of the Seq2Seq model: fit, save/load, sub-models, generate, export."""

import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

from keras_attention.models import Seq2Seq

SOURCE = np.array([[5, 6, 7, 8, 0, 0], [4, 9, 4, 9, 4, 9], [3, 0, 0, 0, 0, 0]])
TARGET_IN = np.array([[1, 5, 6, 7], [1, 4, 9, 4], [1, 3, 0, 0]])
INPUTS = {"source": SOURCE, "target_in": TARGET_IN}


def tiny(**kwargs):
    keras.utils.set_random_seed(0)
    return Seq2Seq(12, 10, embedding_dim=6, units=5, **kwargs)


def decode(model, inputs):
    """`model.decoder` on a dict of arrays and tensors (all as tensors)."""
    return model.decoder(
        keras.tree.map_structure(keras.ops.convert_to_tensor, inputs)
    )


@pytest.fixture(scope="module")
def model():
    return tiny()


def test_forward_shape_and_config_round_trip(model):
    assert tuple(model(INPUTS).shape) == (3, 4, 10)
    config = model.get_config()
    assert Seq2Seq.from_config(config).get_config() == config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cell": "lstm", "num_layers": 2},
        {"attention": "bahdanau", "bidirectional": False},
        {"input_feeding": True, "dropout": 0.2},
        # The classic decoder and head: tanh(W_c [h; c]) → logits.
        {"attention_output": "concat", "output_norm": False},
    ],
)
def test_variants_build_and_generate(kwargs):
    model = tiny(**kwargs)
    assert tuple(model(INPUTS).shape) == (3, 4, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a cell "destroying" a mask
        tokens = model.generate(SOURCE, 5, method="beam")
    assert tuple(tokens.shape) == (3, 5)


def test_compile_fit_evaluate_save_load_identical(tmp_path):
    model = tiny(dropout=0.1)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    target_out = np.concatenate([TARGET_IN[:, 1:], np.full((3, 1), 2)], 1)
    history = model.fit(INPUTS, target_out, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    loss = model.evaluate(INPUTS, target_out, verbose=0)
    path = os.path.join(tmp_path, "seq2seq.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, Seq2Seq)
    np.testing.assert_allclose(restored(INPUTS), model(INPUTS), atol=1e-6)
    np.testing.assert_array_equal(
        restored.generate(SOURCE, 6), model.generate(SOURCE, 6)
    )
    restored.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    np.testing.assert_allclose(
        restored.evaluate(INPUTS, target_out, verbose=0), loss, rtol=1e-5
    )


def test_encoder_and_decoder_sub_models_reproduce_the_model(model):
    encoded = model.encoder(SOURCE)
    assert tuple(encoded["memory"].shape) == (3, 6, 10)  # bidirectional
    with warnings.catch_warnings():
        # The memory carries no keras mask into the decoder (no warning).
        warnings.simplefilter("error")
        decoded = decode(
            model,
            {
                "target_in": TARGET_IN,
                "memory": encoded["memory"],
                "memory_mask": SOURCE != 0,
                "states": encoded["states"],
            },
        )
    np.testing.assert_allclose(decoded["logits"], model(INPUTS), atol=1e-6)
    alignments = np.asarray(decoded["alignments"])  # (B, T, S)
    np.testing.assert_array_equal(alignments[0, :, 4:], 0.0)
    np.testing.assert_allclose(alignments.sum(-1), np.ones((3, 4)), atol=1e-6)


def test_extra_source_padding_changes_nothing(model):
    padded = np.pad(SOURCE, ((0, 0), (0, 3)))
    np.testing.assert_allclose(
        model({"source": padded, "target_in": TARGET_IN}),
        model(INPUTS),
        atol=1e-6,
    )


def test_generate_returns_alignments_over_the_unpadded_source(model):
    tokens, attention = model.generate(SOURCE, 6, return_attention=True)
    tokens, attention = np.asarray(tokens), np.asarray(attention)
    assert tokens.shape == (3, 6) and attention.shape == (3, 6, 6)
    emitted = tokens != 0
    np.testing.assert_allclose(attention.sum(-1), emitted * 1.0, atol=1e-5)
    np.testing.assert_array_equal(attention[0, :, 4:], 0.0)
    np.testing.assert_array_equal(attention[2, :, 1:], 0.0)
    # The alignments are those of a teacher-forced pass over the output.
    target_in = np.concatenate([np.ones((3, 1), int), tokens[:, :-1]], 1)
    decoded = decode(
        model,
        {
            "target_in": target_in,
            **{k: v for k, v in model.encoder(SOURCE).items()},
            "memory_mask": SOURCE != 0,
        },
    )
    expected = np.asarray(decoded["alignments"]) * emitted[:, :, None]
    np.testing.assert_allclose(attention, expected, atol=1e-6)


def test_generate_methods_agree_in_their_limits(model):
    greedy = np.asarray(model.generate(SOURCE, 6))
    beam = model.generate(SOURCE, 6, method="beam", beam_width=1)
    sampled = model.generate(SOURCE, 6, method="sample", top_k=1, seed=1)
    np.testing.assert_array_equal(np.asarray(beam), greedy)
    np.testing.assert_array_equal(np.asarray(sampled), greedy)
    assert not np.any(np.isin(greedy, [1]))  # never the start token
    with pytest.raises(ValueError, match="method"):
        model.generate(SOURCE, 6, method="nucleus")


@pytest.mark.tensorflow_only  # SavedModel export
def test_generate_function_exports_to_a_saved_model(model, tmp_path):
    path = os.path.join(tmp_path, "generate")
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = keras.InputSpec(shape=(None, None), dtype="int32")
    archive.add_endpoint(
        "generate",
        lambda source: model.generate_function(source, 6, method="beam"),
        input_signature=[spec],
    )
    archive.write_out(path, verbose=False)
    expected = np.asarray(model.generate(SOURCE, 6, method="beam"))
    script = textwrap.dedent(
        f"""
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        source = np.array({SOURCE.tolist()}, "int32")
        print(loaded.generate(source).numpy().tolist())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "keras_attention" not in result.stderr
    tokens = eval(result.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(tokens, expected)


def layer_names(model):
    return {w.path.split("/")[0] for w in model.weights}


@pytest.mark.parametrize(
    "attention_output, output_norm, has_norm",
    [
        ("concat", None, True),  # a tanh output gets its norm by default
        ("concat", False, False),
        ("residual", None, False),  # the residual output ends in one
        ("residual", True, True),
    ],
)
def test_output_norm_is_a_layer_norm_before_the_logits(
    attention_output, output_norm, has_norm
):
    model = tiny(attention_output=attention_output, output_norm=output_norm)
    assert ("output_norm" in layer_names(model)) is has_norm
    without = tiny(attention_output=attention_output, output_norm=False)
    assert model.count_params() == without.count_params() + 2 * 5 * has_norm


def test_bad_output_options_raise_value_errors():
    with pytest.raises(ValueError, match="output_norm"):
        tiny(output_norm="yes")
    with pytest.raises(ValueError, match="attention_output"):
        tiny(attention_output="sum")


def test_configs_saved_before_the_output_options_load_the_classic_head():
    config = tiny(attention_output="concat").get_config()
    del config["output_norm"], config["attention_output"]  # older versions
    clone = Seq2Seq.from_config(config)
    assert clone.get_config()["attention_output"] == "concat"
    assert "output_norm" not in layer_names(clone)


def test_unknown_keyword_arguments_raise_naming_them():
    # Functional `keras.Model` would take `dropuot=` quietly.
    with pytest.raises(ValueError, match="dropuot"):
        Seq2Seq(10, 10, dropuot=0.3)
    with pytest.raises(ValueError, match="hidden_dim, num_head"):
        Seq2Seq(10, 10, num_head=2, hidden_dim=8)
    model = tiny(name="translator", trainable=False, dtype="float32")
    assert (model.name, model.trainable) == ("translator", False)
    config = model.get_config()
    assert Seq2Seq.from_config(config).get_config() == config
