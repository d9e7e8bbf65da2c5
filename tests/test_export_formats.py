"""ONNX and LiteRT export: the files run outside Keras and agree with it.

ONNX runs in onnxruntime; LiteRT in the builtin interpreter of
`ai_edge_litert` (no Flex delegate: a select-TF op would fail to load).
Dynamic dimensions are checked by running a shape other than the one the
model was first called with.
"""

import keras
import numpy as np
import pytest

from keras_attention import layers
from keras_attention.models import Transformer
from keras_attention.models import TransformerClassifier

onnxruntime = pytest.importorskip("onnxruntime")
litert = pytest.importorskip("ai_edge_litert.interpreter")

# Keras exports ONNX through tf2onnx and LiteRT through the TensorFlow
# converter on this backend; the other backends use other exporters.
pytestmark = [pytest.mark.tensorflow_only, pytest.mark.slow]

RNG = np.random.default_rng(0)


def floats(*shape):
    return RNG.normal(size=shape).astype("float32")


def ids(vocab, *shape, pad=0):
    tokens = RNG.integers(4, vocab, shape).astype("int32")
    if pad:
        tokens[0, -pad:] = 0  # padding, so the masks are exercised
    return tokens


def attention():
    query = keras.Input((None, 8), name="query")
    value = keras.Input((None, 6), name="value")
    out = layers.Attention(score="additive")(query, value)
    return keras.Model([query, value], out), {
        "query": floats(2, 5, 8),
        "value": floats(2, 7, 6),
    }


def pooling():
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(30, 8, mask_zero=True)(tokens)
    out = layers.AttentionPooling()(x)
    return keras.Model(tokens, out), {"tokens": ids(30, 3, 9, pad=4)}


def multi_head():
    query = keras.Input((None, 8), name="query")
    value = keras.Input((None, 8), name="value")
    out = layers.MultiHeadAttention(num_heads=2, key_dim=4)(
        query, value, use_causal_mask=True
    )
    return keras.Model([query, value], out), {
        "query": floats(2, 6, 8),
        "value": floats(2, 6, 8),
    }


def classifier():
    model = TransformerClassifier(
        40, 3, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16,
        max_length=12,
    )  # fmt: skip
    return model, {"tokens": ids(40, 2, 10, pad=3)}


def transformer():
    model = Transformer(
        30, 35, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16,
        max_length=12,
    )  # fmt: skip
    return model, {"source": ids(30, 2, 7, pad=2), "target_in": ids(35, 2, 5)}


MODELS = {
    "attention": attention,
    "pooling": pooling,
    "multi_head": multi_head,
    "classifier": classifier,
    "transformer": transformer,
}


def keras_outputs(model, inputs):
    if len(model.inputs) == 1 and not isinstance(model.input, dict):
        return np.asarray(model(next(iter(inputs.values()))))
    if isinstance(model.input, dict):
        return np.asarray(model(inputs))
    return np.asarray(model([inputs[t.name] for t in model.inputs]))


def run_onnx(path, inputs):
    session = onnxruntime.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    assert sorted(names) == sorted(inputs)
    return session.run(None, inputs)[0]


def run_litert(path, inputs):
    interpreter = litert.Interpreter(model_path=str(path))  # builtin ops
    runner = interpreter.get_signature_runner()
    assert sorted(runner.get_input_details()) == sorted(inputs)
    (output,) = runner(**inputs).values()
    return output


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_exported_model_matches_keras(name, fmt, tmp_path):
    keras.utils.set_random_seed(0)
    model, inputs = MODELS[name]()
    expected = keras_outputs(model, inputs)
    path = tmp_path / f"{name}.{'onnx' if fmt == 'onnx' else 'tflite'}"
    model.export(str(path), format=fmt, verbose=False)
    run = run_onnx if fmt == "onnx" else run_litert
    np.testing.assert_allclose(run(path, inputs), expected, atol=1e-4)
    # Dynamic batch and lengths: one row less, one position less.
    smaller = {k: v[1:, :-1] for k, v in inputs.items()}
    np.testing.assert_allclose(
        run(path, smaller), keras_outputs(model, smaller), atol=1e-4
    )
