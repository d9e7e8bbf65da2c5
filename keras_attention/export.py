"""Export a translation model as a string-in, string-out SavedModel.

The exported graph does everything: tokenize (tensorflow-text WordPiece) →
encode → decode (greedy or beam search, pure TensorFlow ops, no custom op) →
detokenize. It reloads with only `tensorflow` and `tensorflow_text` imported:

```python
import tensorflow as tf
import tensorflow_text  # registers the WordPiece ops

translator = tf.saved_model.load("translator")
translator.translate(tf.constant(["This cat is very large."]))
# {"translation": [b"Este gato es muy grande."], "truncated": [False]}
```
"""

import dataclasses

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
    utils.check_choice("method", options["method"], METHODS)
    utils.check_positive_int("beam_width", options["beam_width"])
    utils.check_positive_int("max_length", options["max_length"])
    # A source holds at least [START] and [END].
    utils.check_number(
        "source_length", options["source_length"], 1, integer=True
    )
    # The same limits as `model.generate`, one place: `check_lengths`.
    model.check_lengths(options["max_length"], options["source_length"])
    _check_vocabularies(model, source_tokenizer, target_tokenizer)


def _default_lengths(model, max_length, source_length):
    """The model's positions (or 64 for an RNN) unless given."""
    if max_length is None:
        max_length = model.max_positions or 64
    if source_length is None:
        source_length = model.max_positions or max(max_length, 2)
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
        if hasattr(model, "check_lengths"):
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
