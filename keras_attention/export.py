"""Export a translation model: a string SavedModel, or one on-device file.

`export_generator` writes the whole generation loop of a `Transformer` or
`Seq2Seq` (ids in, ids out) into one LiteRT or ONNX file, for phones and
onnxruntime (docs: "On-device and ONNX"). `export_translator` writes a
string-in, string-out SavedModel, whose graph does everything: tokenize
(tensorflow-text WordPiece) → encode → decode (greedy or beam search, pure
TensorFlow ops, no custom op) → detokenize. It reloads with only `tensorflow`
and `tensorflow_text` imported:

```python
import tensorflow as tf
import tensorflow_text  # registers the WordPiece ops

translator = tf.saved_model.load("translator")
translator.translate(tf.constant(["This cat is very large."]))
# {"translation": [b"Este gato es muy grande."], "truncated": [False]}
```
"""

import dataclasses
import os
import tempfile

import keras
import tensorflow as tf

from keras_attention import decoding
from keras_attention import utils
from keras_attention.constants import UNK_ID
from keras_attention.text import Tokenizer

METHODS = ("greedy", "beam")


def _check_arguments(model, source_tokenizer, target_tokenizer, **options):
    """Raise before any tracing, naming the argument that cannot work."""
    if not hasattr(model, "check_lengths"):
        raise TypeError(
            "`model` must be a generating model (`Seq2Seq`, `Transformer`). "
            f"Received: model of type {type(model).__name__}"
        )
    for name, tokenizer in (
        ("source_tokenizer", source_tokenizer),
        ("target_tokenizer", target_tokenizer),
    ):
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(
                f"`{name}` must be a `keras_attention.text.Tokenizer`. "
                f"Received: {type(tokenizer).__name__}"
            )
    # A source holds at least [START] and [END].
    utils.check_number(
        "source_length", options["source_length"], 1, integer=True
    )
    _check_decoding(model, **options)
    _check_vocabularies(model, source_tokenizer, target_tokenizer)


def _check_decoding(model, method, beam_width, max_length, source_length):
    """The checks both exports make of the decoding they trace."""
    utils.check_choice("method", method, METHODS)
    utils.check_positive_int("beam_width", beam_width)
    utils.check_positive_int("max_length", max_length)
    # The same limits as `model.generate`, one place: `check_lengths`.
    model.check_lengths(max_length, source_length)


def _default_lengths(model, max_length, source_length):
    """The model's positions (or 64 for an RNN) unless given."""
    positions = getattr(model, "max_positions", None)
    if max_length is None:
        max_length = positions or 64
    if source_length is None:
        source_length = positions or max(max_length, 2)
    return max_length, source_length


def _check_vocabularies(model, source_tokenizer, target_tokenizer):
    """Ids must stay inside both the model's and the tokenizers' tables."""
    if source_tokenizer.vocabulary_size > model.source_vocab_size:
        raise ValueError(
            "`source_tokenizer` has more tokens than the model's source "
            f"vocabulary. Received: {source_tokenizer.vocabulary_size} "
            f"tokens, model source_vocab_size={model.source_vocab_size}"
        )
    if model.target_vocab_size > target_tokenizer.vocabulary_size:
        raise ValueError(
            "The model can emit ids that `target_tokenizer` does not have. "
            f"Received: model target_vocab_size={model.target_vocab_size}, "
            f"{target_tokenizer.vocabulary_size} target tokens"
        )


class Translator(tf.Module):
    """Strings in, strings out: tokenizers around a model's `generate`.

    `translate(texts)` returns `{"translation": tf.string (N,),
    "truncated": tf.bool (N,)}`; `truncated` is `True` where the source had
    more than `source_length` tokens and was cut to fit.

    Args:
        model: a model with `generate(source, max_length, method, ...)`
            (`keras_attention.models.Seq2Seq` or `Transformer`).
        source_tokenizer: `keras_attention.text.Tokenizer` of the source.
        target_tokenizer: `keras_attention.text.Tokenizer` of the target.
        max_length: number of target tokens generated. Defaults to the
            model's positions (`Transformer`'s `max_length`), else `64`.
        source_length: source ids are truncated (keeping `[END]`) or padded
            to this length. Defaults to the model's positions, else
            `max_length` (at least 2: `[START]` and `[END]`).
        method: `"greedy"` or `"beam"`. Defaults to `"greedy"`.
        beam_width: beams of beam search. Defaults to `4`.
        min_length: no `[END]` among the first `min_length` tokens, as
            in `model.generate` (HF's logit controls,
            `keras_attention.decoding.Controls`). Defaults to `0`.
        no_repeat_ngram_size: no n-gram of this size twice in a
            translation; `0` for none. Defaults to `0`.
        repetition_penalty: CTRL's penalty on the logits of tokens
            already generated. Defaults to `1.0` (none).
        bad_token_ids: list of target ids never emitted, or `None`.
            Defaults to `None`.
    """

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        max_length=None,
        source_length=None,
        method="greedy",
        beam_width=4,
        min_length=0,
        no_repeat_ngram_size=0,
        repetition_penalty=1.0,
        bad_token_ids=None,
    ):
        super().__init__()
        max_length, source_length = _default_lengths(
            model, max_length, source_length
        )
        _check_arguments(
            model,
            source_tokenizer,
            target_tokenizer,
            max_length=max_length,
            source_length=source_length,
            method=method,
            beam_width=beam_width,
        )
        # Checked here too, before anything is traced or written.
        self.controls = decoding.Controls(
            min_length, no_repeat_ngram_size, repetition_penalty, bad_token_ids
        )
        self.controls.check_vocabulary(model.target_vocab_size)
        self.model = model
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.max_length = max_length
        self.source_length = source_length
        self.method = method
        self.beam_width = beam_width

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def translate(self, texts):
        """`tf.string (N,)` → `{"translation", "truncated"}`, both `(N,)`."""
        ids = self.source_tokenizer.tokenize(texts)  # ragged (N, None)
        truncated = ids.row_lengths() > self.source_length
        source = self.source_tokenizer.pad(ids, self.source_length)
        kwargs = (
            {"beam_width": self.beam_width} if self.method == "beam" else {}
        )
        # The un-compiled decoding graph when the model has one: this
        # function is itself being traced.
        generate = getattr(self.model, "generate_function", None)
        generate = generate or self.model.generate
        kwargs.update(dataclasses.asdict(self.controls))
        tokens = generate(
            source, max_length=self.max_length, method=self.method, **kwargs
        )
        translation = self.target_tokenizer.detokenize(tokens)
        # Nothing to translate (no piece once normalised: empty, blank or
        # only Unicode spaces) gives nothing, whatever the model would say.
        empty = tf.logical_not(tf.reduce_any(source >= UNK_ID, axis=1))
        return {
            "translation": tf.where(empty, "", translation),
            "truncated": truncated,
        }


def export_translator(
    model,
    source_tokenizer,
    target_tokenizer,
    path,
    max_length=None,
    method="greedy",
    beam_width=4,
    source_length=None,
    min_length=0,
    no_repeat_ngram_size=0,
    repetition_penalty=1.0,
    bad_token_ids=None,
):
    """Write a SavedModel that translates a batch of strings.

    Its `serving_default` signature (also callable as `loaded.translate`)
    maps `tf.string [N]` to `{"translation": tf.string [N], "truncated":
    tf.bool [N]}`. Empty (or blank) strings give empty translations;
    sources longer than `source_length` tokens are truncated and flagged in
    `truncated`; invalid UTF-8 bytes are replaced, never an error. The
    arguments are checked before anything is traced.
    `saved_model_cli show --all --dir PATH` describes it.

    Args:
        model: a model with a `generate` method (`Seq2Seq`, `Transformer`).
        source_tokenizer: `keras_attention.text.Tokenizer` of the source.
        target_tokenizer: `keras_attention.text.Tokenizer` of the target.
        path: directory to write.
        max_length: number of target tokens generated. Defaults to the
            model's positions (`Transformer`'s `max_length`), else `64`.
        method: `"greedy"` or `"beam"`. Defaults to `"greedy"`.
        beam_width: beams of beam search. Defaults to `4`.
        source_length: source length the model is fed (truncate or pad).
            Defaults to the model's positions, else `max_length` (at least
            2: `[START]` and `[END]`).
        min_length: no `[END]` among the first `min_length` tokens, as
            in `model.generate` (HF's logit controls,
            `keras_attention.decoding.Controls`). Defaults to `0`.
        no_repeat_ngram_size: no n-gram of this size twice in a
            translation; `0` for none. Defaults to `0`.
        repetition_penalty: CTRL's penalty on the logits of tokens
            already generated. Defaults to `1.0` (none).
        bad_token_ids: list of target ids never emitted, or `None`.
            Defaults to `None`.

    Returns:
        The `Translator` module that was saved (callable in-process).
    """
    translator = Translator(
        model,
        source_tokenizer,
        target_tokenizer,
        max_length=max_length,
        source_length=source_length,
        method=method,
        beam_width=beam_width,
        min_length=min_length,
        no_repeat_ngram_size=no_repeat_ngram_size,
        repetition_penalty=repetition_penalty,
        bad_token_ids=bad_token_ids,
    )
    tf.saved_model.save(
        translator,
        str(path),
        signatures={"serving_default": translator.translate},
    )
    return translator


FORMATS = ("litert", "onnx")
QUANTIZATIONS = (None, "dynamic_int8", "float16")
ONNX_OPSET = 17


def _check_generator(model, path, **options):
    """Raise before any tracing or writing, naming the argument."""
    if not hasattr(model, "generate_function"):
        raise ValueError(
            "`model` must be a generating model (`Seq2Seq`, `Transformer`). "
            f"Received: model of type {type(model).__name__}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder):
        raise ValueError(
            "`path` must be a file in an existing folder. "
            f"Received: path={path!r}"
        )
    utils.check_choice("format", options["format"], FORMATS)
    utils.check_choice("quantize", options["quantize"], QUANTIZATIONS)
    if options["format"] == "onnx" and options["quantize"] == "float16":
        raise ValueError(
            "`quantize='float16'` is for LiteRT files; ONNX files take "
            "`quantize='dynamic_int8'` (onnxruntime's dynamic quantization)."
        )
    for name in ("source_length", "batch_size"):
        utils.check_positive_int(name, options[name])
    decoding.check_beam_options(
        options["beam_width"], options["length_penalty"]
    )
    _check_decoding(
        model, options["method"], options["beam_width"],
        options["max_length"], options["source_length"],
    )  # fmt: skip
    options["controls"].check_vocabulary(model.target_vocab_size)


def _generator(model, batch_size, source_length, max_length, options):
    """A `tf.function` `source -> {"tokens"}` with the weights as constants.

    The weights enter the traced graph as constants (a `StatelessScope`
    maps each variable to one): LiteRT cannot read a variable inside the
    decoding loop, and a constant is what both converters quantize.
    """
    spec = tf.TensorSpec([batch_size, source_length], tf.int32, name="source")
    weights = [(v, v.numpy()) for v in model.variables]

    @tf.function(input_signature=[spec], autograph=False)
    def generator(source):
        mapping = [(v, tf.constant(value)) for v, value in weights]
        with keras.StatelessScope(state_mapping=mapping):
            tokens = model.generate_function(source, max_length, **options)
        return {"tokens": tf.cast(tokens, tf.int32)}

    return generator


def _litert(generator, quantize):
    """The flatbuffer of `generator`, builtin operators only."""
    module = tf.Module()
    module.generate = generator  # a signature named after the function
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [generator.get_concrete_function()], module
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def _onnx(generator, quantize):
    """The serialized ONNX model of `generator` (opset `ONNX_OPSET`)."""
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(
        generator, generator.input_signature, opset=ONNX_OPSET
    )
    if quantize is None:
        return proto.SerializeToString()
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = (os.path.join(folder, n) for n in ("f.onnx", "q.onnx"))
        with open(source, "wb") as f:
            f.write(proto.SerializeToString())
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            extra_options={"EnableSubgraph": True},
        )
        with open(target, "rb") as f:
            return f.read()


def export_generator(
    model,
    path,
    format="litert",
    method="greedy",
    max_length=None,
    source_length=None,
    batch_size=1,
    beam_width=4,
    length_penalty=0.6,
    quantize=None,
    min_length=0,
    no_repeat_ngram_size=0,
    repetition_penalty=1.0,
    bad_token_ids=None,
):
    """Write a model's whole generation loop into one LiteRT or ONNX file.

    The file maps int32 `source` `[batch_size, source_length]` (ids,
    0-padded) to int32 `tokens` `[batch_size, max_length]`: the tokens of
    `model.generate(source, max_length, method=method, ...)`. The encoder,
    the decoding loop and its key/value cache are all inside. LiteRT files
    use builtin operators only (no Flex, no TF Select), so the plain
    interpreter runs them (`ai_edge_litert` in Python, LiteRT on Android
    and iOS); ONNX files run in onnxruntime. Arguments are checked before
    anything is traced, and nothing is written unless the export succeeds.

    Args:
        model: a `Seq2Seq` or `Transformer` (on TensorFlow; a model
            trained on JAX or PyTorch loads its `.weights.h5` here first).
        path: the file to write, e.g. `"translate.tflite"` or
            `"translate.onnx"`.
        format: `"litert"` or `"onnx"`. Defaults to `"litert"`.
        method: `"greedy"` or `"beam"`. Defaults to `"greedy"`.
        max_length: tokens generated. Defaults to the model's positions
            (`Transformer`'s `max_length`), else `64`.
        source_length: source ids per row. Defaults to the model's
            positions, else `max_length`.
        batch_size: rows per call of a LiteRT file (its loop runs on
            fixed shapes); ONNX files take any batch. Defaults to `1`.
        beam_width: beams of beam search. Defaults to `4`.
        length_penalty: GNMT's length penalty of beam search. Defaults to
            `0.6`.
        quantize: `None`; `"dynamic_int8"` (int8 weights, float
            activations; LiteRT and ONNX) or `"float16"` (float16 weights;
            LiteRT). Defaults to `None`.
        min_length: no `[END]` among the first `min_length` tokens, as
            in `model.generate` (HF's logit controls,
            `keras_attention.decoding.Controls`, inside the file too).
            Defaults to `0`.
        no_repeat_ngram_size: no n-gram of this size twice in a row's
            tokens; `0` for none. Defaults to `0`.
        repetition_penalty: CTRL's penalty on the logits of tokens
            already generated. Defaults to `1.0` (none).
        bad_token_ids: list of ids never emitted, or `None`. Defaults to
            `None`.

    Returns:
        `path`.

    Example:

    ```python
    from ai_edge_litert.interpreter import Interpreter

    export_generator(model, "translate.tflite", max_length=16)
    run = Interpreter("translate.tflite").get_signature_runner()
    run(source=source_ids)["tokens"]  # == model.generate(source_ids, 16)
    ```
    """
    max_length, source_length = _default_lengths(
        model, max_length, source_length
    )
    controls = decoding.Controls(
        min_length, no_repeat_ngram_size, repetition_penalty, bad_token_ids
    )  # checked here, before anything is traced
    options = {"method": method, **dataclasses.asdict(controls)}
    if method == "beam":
        options.update(beam_width=beam_width, length_penalty=length_penalty)
    _check_generator(
        model, path, format=format, method=method, max_length=max_length,
        source_length=source_length, batch_size=batch_size,
        beam_width=beam_width, length_penalty=length_penalty,
        quantize=quantize, controls=controls,
    )  # fmt: skip
    # ONNX files take any batch; LiteRT's loop runs on fixed shapes.
    batch = batch_size if format == "litert" else None
    generator = _generator(model, batch, source_length, max_length, options)
    convert = _litert if format == "litert" else _onnx
    data = convert(generator, quantize)
    with open(path, "wb") as f:
        f.write(data)
    return path
