"""`export_generator`: one LiteRT or ONNX file with the whole decoding loop.

Every file runs outside Keras (LiteRT's builtin interpreter, without the
Flex delegate; onnxruntime) and must give `model.generate`'s tokens, for
both models, greedy and beam, including a Transformer that has learned to
reverse sequences.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_attention.datasets import copy_reverse
from keras_attention.export import export_generator
from keras_attention.models import Seq2Seq
from keras_attention.models import Transformer
from tests.scripts.train_on_backend import ARGUMENTS

onnxruntime = pytest.importorskip("onnxruntime")
litert = pytest.importorskip("ai_edge_litert.interpreter")

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.slow]

MAX_LENGTH, SOURCE_LENGTH = 9, 8
SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")
DATA = copy_reverse(1200, 2, 6, num_symbols=8, seed=0, source_length=8)
SOURCE = DATA["source"][:3]  # three rows of different lengths


def run(path, source):
    """The file's tokens for `source`, in its own runtime."""
    if path.endswith(".onnx"):
        session = onnxruntime.InferenceSession(path)
        return session.run(["tokens"], {"source": source})[0]
    runner = litert.Interpreter(path).get_signature_runner()
    return runner(source=source)["tokens"]


@pytest.fixture(scope="module")
def models():
    """A Transformer that has learned to reverse 2-6 symbols, and a
    Seq2Seq as built."""
    keras.utils.set_random_seed(0)
    transformer = Transformer(
        12, 12, num_layers=1, hidden_dim=32, num_heads=2,
        intermediate_dim=64, max_length=10, dropout=0.0,
    )  # fmt: skip
    transformer.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    inputs = {"source": DATA["source"], "target_in": DATA["target_in"]}
    transformer.fit(inputs, DATA["target_out"], epochs=6, verbose=0)
    seq2seq = Seq2Seq(12, 12, embedding_dim=6, units=5)
    seq2seq({"source": SOURCE, "target_in": SOURCE})
    return {"transformer": transformer, "seq2seq": seq2seq}


@pytest.mark.parametrize(
    "name, format, method",
    [
        ("seq2seq", "litert", "greedy"),
        ("seq2seq", "litert", "beam"),
        ("transformer", "onnx", "beam"),
        ("seq2seq", "onnx", "greedy"),
    ],  # the Transformer in LiteRT: greedy learned, beam with the controls
)
def test_exported_file_gives_the_tokens_of_generate(
    models, tmp_path, name, format, method
):
    model = models[name]
    options = {"method": method, "beam_width": 3} if method == "beam" else {}
    path = export_generator(
        model, str(tmp_path / f"model.{format}"), format=format,
        max_length=MAX_LENGTH, source_length=SOURCE_LENGTH, **options,
    )  # fmt: skip
    expected = np.asarray(model.generate(SOURCE, MAX_LENGTH, **options))
    got = np.concatenate([run(path, row[None]) for row in SOURCE])
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)
    if format == "onnx":  # any batch
        np.testing.assert_array_equal(run(path, SOURCE), expected)


@pytest.mark.parametrize(
    "format, method", [("litert", "beam"), ("onnx", "greedy")]
)
def test_decoding_controls_are_inside_the_file(
    models, tmp_path, format, method
):
    """HF's logit controls run inside the loop of the file."""
    model = models["transformer"]
    options = {
        "method": method, "min_length": 3, "no_repeat_ngram_size": 2,
        "repetition_penalty": 1.3, "bad_token_ids": [5, 7],
    }  # fmt: skip
    if method == "beam":
        options["beam_width"] = 3
    path = export_generator(
        model, str(tmp_path / f"controls.{format}"), format=format,
        max_length=MAX_LENGTH, source_length=SOURCE_LENGTH, **options,
    )  # fmt: skip
    expected = np.asarray(model.generate(SOURCE, MAX_LENGTH, **options))
    plain = np.asarray(model.generate(SOURCE, MAX_LENGTH, method=method))
    assert (expected != plain).any()  # the controls change these tokens
    got = np.concatenate([run(path, row[None]) for row in SOURCE])
    np.testing.assert_array_equal(got, expected)


def test_learned_model_reverses_on_device(models, tmp_path):
    """The exported Transformer does the task: it reverses the sources it
    sees, row by row at batch 1, as `generate` does."""
    model = models["transformer"]
    path = export_generator(
        model, str(tmp_path / "reverse.tflite"), max_length=MAX_LENGTH,
        source_length=SOURCE_LENGTH,
    )  # fmt: skip
    rows = DATA["source"][-20:]
    got = np.concatenate([run(path, row[None]) for row in rows])
    np.testing.assert_array_equal(got, model.generate(rows, MAX_LENGTH))
    correct = (got == DATA["target_out"][-20:, :MAX_LENGTH]).all(axis=1)
    assert correct.mean() >= 0.6  # measured: 0.85 after six epochs


def test_quantized_files_are_small_and_keep_the_tokens(models, tmp_path):
    """int8 and float16 weights: smaller files (LiteRT quantizes tensors of
    1,024 numbers or more, so the size is measured on a 128-wide model),
    and the learned Transformer's tokens survive int8."""
    keras.utils.set_random_seed(0)
    wide = Transformer(
        300, 300, num_layers=1, hidden_dim=128, num_heads=2,
        intermediate_dim=256, max_length=10,
    )  # fmt: skip
    wide({"source": SOURCE, "target_in": SOURCE})
    size = {}
    for quantize in (None, "dynamic_int8", "float16"):
        path = export_generator(
            wide, str(tmp_path / f"{quantize}.tflite"), quantize=quantize,
            max_length=MAX_LENGTH, source_length=SOURCE_LENGTH,
        )  # fmt: skip
        size[quantize] = os.path.getsize(path)
    assert size["dynamic_int8"] < 0.35 * size[None]
    assert size["float16"] < 0.6 * size[None]
    model = models["transformer"]
    path = export_generator(
        model, str(tmp_path / "learned.tflite"), quantize="dynamic_int8",
        max_length=MAX_LENGTH, source_length=SOURCE_LENGTH,
    )  # fmt: skip
    rows = DATA["source"][-10:]
    expected = np.asarray(model.generate(rows, MAX_LENGTH))
    got = np.concatenate([run(path, row[None]) for row in rows])
    assert (got == expected).all(axis=1).mean() >= 0.8


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"format": "tflite"}, "format"),
        ({"method": "sample"}, "method"),
        ({"quantize": "int4"}, "quantize"),
        ({"format": "onnx", "quantize": "float16"}, "quantize"),
        ({"max_length": 0}, "max_length"),
        ({"max_length": 2.5}, "max_length"),
        ({"source_length": -1}, "source_length"),
        ({"batch_size": 0}, "batch_size"),
        ({"method": "beam", "beam_width": 0}, "beam_width"),
        ({"method": "beam", "length_penalty": -1.0}, "length_penalty"),
        ({"min_length": -1}, "min_length"),
        ({"bad_token_ids": [99]}, "bad_token_ids"),
    ],
)
def test_bad_arguments_name_themselves_and_write_nothing(
    models, tmp_path, kwargs, name
):
    path = tmp_path / "model.tflite"
    with pytest.raises(ValueError, match=name):
        export_generator(models["transformer"], str(path), **kwargs)
    assert not path.exists()


def test_bad_model_and_path_name_themselves(models, tmp_path):
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="model"):
        export_generator(keras.Sequential(), str(path))
    for bad in (tmp_path, tmp_path / "missing" / "m.tflite"):
        with pytest.raises(ValueError, match="path"):
            export_generator(models["seq2seq"], str(bad))
    assert not path.exists()


def test_model_trained_on_jax_exports_through_tensorflow(tmp_path):
    """The documented recipe: train on JAX, save the weights, rebuild and
    load them on TensorFlow, export; the file gives JAX's tokens."""
    pytest.importorskip("jax")
    subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "train_on_backend.py"),
         str(tmp_path)],
        env={**os.environ, "KERAS_BACKEND": "jax"},
        check=True, timeout=600,
    )  # fmt: skip
    expected = np.load(tmp_path / "tokens.npz")
    model = Transformer(**ARGUMENTS)
    model(
        {"source": expected["source"], "target_in": expected["source"]}
    )  # built, then the JAX-trained weights
    model.load_weights(tmp_path / "model.weights.h5")
    path = export_generator(
        model, str(tmp_path / "jax.tflite"), max_length=9, source_length=8
    )
    got = np.concatenate([run(path, row[None]) for row in expected["source"]])
    np.testing.assert_array_equal(got, expected["tokens"])
    assert (got == 2).any()  # it learned to end its outputs
