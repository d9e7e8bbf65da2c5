"""WordPiece tokenization with tensorflow-text, savable in a SavedModel.

`build_vocabulary` learns a WordPiece vocabulary offline from a list of
texts (tensorflow-text's BERT vocabulary generator); `Tokenizer` maps strings
to padded id tensors and back with `FastWordpieceTokenizer`, entirely in
TensorFlow ops, so it runs inside `tf.data` pipelines and inside exported
SavedModels (the translator of `keras_attention.export`).

Reserved ids everywhere: pad 0, start 1, end 2, unknown 3.
"""

import collections

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

from keras_attention import constants
from keras_attention import utils
from keras_attention.constants import END_ID
from keras_attention.constants import PAD_ID
from keras_attention.constants import START_ID
from keras_attention.constants import UNK_ID

RESERVED_TOKENS = list(constants.RESERVED_TOKENS)
UNK = RESERVED_TOKENS[UNK_ID]


def _as_string_batch(texts):
    """`texts` as a `tf.string` `(N,)` tensor, or a clear error."""
    if isinstance(texts, (str, bytes)):
        raise ValueError(
            "`texts` must be a batch of strings `(N,)`, e.g. a list. "
            f"Received: one string {texts[:40]!r}"
        )
    texts = tf.convert_to_tensor(texts)
    if texts.dtype != tf.string or texts.shape.rank != 1:
        raise ValueError(
            "Invalid argument `texts`: expected a batch of strings `(N,)`. "
            f"Received: dtype={texts.dtype.name}, shape={tuple(texts.shape)}"
        )
    return texts


def normalize(texts):
    """Clean, lower-case and NFKC-normalise a string tensor.

    Invalid UTF-8 bytes become U+FFFD instead of raising, so any bytes a
    client sends can be tokenized.

    Args:
        texts: `tf.string` tensor of any shape.

    Returns:
        `tf.string` tensor of the same shape.
    """
    texts = tf.strings.unicode_transcode(
        texts, "UTF-8", "UTF-8", errors="replace"
    )
    texts = tf_text.case_fold_utf8(texts)
    return tf_text.normalize_utf8(texts, "NFKC")


def _check_texts(texts):
    """`texts` as a list of Python strings, or a `TypeError` naming it."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            "`texts` must be an iterable of strings, not one string (it "
            f"would be read as characters). Received: texts={texts[:40]!r}"
        )
    texts = list(texts)
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(
                "`texts` must hold Python strings. Received: an item of "
                f"type {type(text).__name__}: {text!r:.40}"
            )
    return texts


def build_vocabulary(texts, size, batch_size=1024):
    """Learn a WordPiece vocabulary from texts (offline, no download).

    Args:
        texts: iterable of Python strings.
        size: target vocabulary size (an upper bound).
        batch_size: texts per batch while counting words. Defaults to `1024`.

    Returns:
        A list of tokens. The first four are the reserved tokens (pad,
        start, end, unknown, in that order); word-continuation pieces start
        with `##`.

    Examples:
        >>> vocab = build_vocabulary(["the cat", "the dog"] * 20, size=50)
        >>> len(vocab) <= 50, vocab.index("the") > 3
        (True, True)
    """
    texts = _check_texts(texts)
    if not texts:
        raise ValueError("`texts` is empty: nothing to learn a vocabulary from")
    utils.check_number("size", size, len(RESERVED_TOKENS), integer=True)
    utils.check_positive_int("batch_size", batch_size)
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(batch_size)
    dataset = dataset.map(normalize)
    vocabulary = bert_vocab_from_dataset.bert_vocab_from_dataset(
        dataset,
        vocab_size=size,
        reserved_tokens=RESERVED_TOKENS,
        bert_tokenizer_params={"lower_case": False},  # done by `normalize`
        learn_params={},
    )
    return list(vocabulary)


def _check_vocabulary(vocabulary):
    """`vocabulary` as a list of distinct tokens after the reserved ones."""
    vocabulary = _check_texts(vocabulary)
    if vocabulary[: len(RESERVED_TOKENS)] != RESERVED_TOKENS:
        raise ValueError(
            f"`vocabulary` must start with {RESERVED_TOKENS}. "
            f"Received: {vocabulary[:4]}"
        )
    counts = collections.Counter(vocabulary)
    repeated = sorted(token for token, n in counts.items() if n > 1)
    if repeated or "" in counts:
        raise ValueError(
            "`vocabulary` must hold distinct, non-empty tokens. Received: "
            f"repeated or empty tokens {repeated[:5] or ['']}"
        )
    return vocabulary


class Tokenizer(tf.Module):
    """Strings to padded WordPiece ids and back, in TensorFlow ops.

    `tokenize` = normalize (UTF-8 repair, case folding, NFKC) → BERT-style
    split on whitespace and punctuation → `FastWordpieceTokenizer` → add
    `[START]`/`[END]` → truncate → pad with 0. A `tf.Module`: attach it to a
    module you `tf.saved_model.save` and it is exported with it.

    Args:
        vocabulary: list of tokens whose first four are the reserved ones
            (as `build_vocabulary` returns), or the path of a text file with
            one token per line.
        max_length: default length of `__call__`'s output. Defaults to
            `None` (the longest in the batch).

    Examples:
        >>> vocab = build_vocabulary(["the cat sat"] * 20, size=40)
        >>> tokenizer = Tokenizer(vocab)
        >>> ids = tokenizer(["The cat sat"])
        >>> tokenizer.detokenize(ids).numpy()[0].decode()
        'the cat sat'
    """

    def __init__(self, vocabulary, max_length=None, name=None):
        super().__init__(name=name)
        if isinstance(vocabulary, str):
            with open(vocabulary, encoding="utf-8") as f:
                vocabulary = [line.rstrip("\n") for line in f]
        vocabulary = _check_vocabulary(vocabulary)
        utils.check_number(
            "max_length", max_length, 1, integer=True, allow_none=True
        )
        self.vocabulary = vocabulary
        self.max_length = max_length
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=vocabulary,
            token_out_type=tf.int32,
            unknown_token=UNK,
            support_detokenization=True,
        )
        self._tokens = tf.constant(vocabulary)

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def get_config(self):
        return {"vocabulary": self.vocabulary, "max_length": self.max_length}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def save_vocabulary(self, path):
        """Write the vocabulary, one token per line (`Tokenizer(path)`)."""
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(self.vocabulary) + "\n")

    def tokenize(self, texts):
        """Ragged ids `(N, None)` with `[START]` ... `[END]`, no padding.

        Args:
            texts: `tf.string` `(N,)` (or a list of Python strings).

        Returns:
            int32 `tf.RaggedTensor` `(N, None)`.
        """
        texts = _as_string_batch(texts)
        pieces = self._wordpiece.tokenize(normalize(texts))  # (N, None)
        batch = tf.shape(texts)[0]
        start = tf.fill([batch, 1], START_ID)
        end = tf.fill([batch, 1], END_ID)
        return tf.concat([start, pieces, end], axis=1)

    def __call__(self, texts, max_length=None):
        """Padded ids `(N, L)`: start, pieces, end, then pad 0.

        Inputs longer than `L` are truncated and keep their `[END]` id.

        Args:
            texts: `tf.string` `(N,)` or a list of Python strings.
            max_length: output length `L`; defaults to the tokenizer's
                `max_length`, else the longest sequence of the batch.

        Returns:
            int32 tensor `(N, L)`.
        """
        utils.check_number(
            "max_length", max_length, 1, integer=True, allow_none=True
        )  # room for [START] and [END]
        max_length = max_length or self.max_length
        ids = self.tokenize(texts)
        if max_length is None:
            return ids.to_tensor(PAD_ID)
        # Truncate the pieces, not the end marker.
        pieces = ids[:, 1:-1][:, : max_length - 2]
        batch = tf.shape(ids.row_lengths())[0]
        ids = tf.concat(
            [
                tf.fill([batch, 1], START_ID),
                pieces,
                tf.fill([batch, 1], END_ID),
            ],
            axis=1,
        )
        return ids.to_tensor(PAD_ID, shape=[None, max_length])

    def detokenize(self, ids):
        """Ids `(N, L)` back to text `(N,)`, dropping reserved tokens.

        Decoding stops at the first `[END]`; `[PAD]`, `[START]` are removed
        and `[UNK]` is kept as the literal `[UNK]`.

        Args:
            ids: int tensor `(N, L)` (dense or ragged).

        Returns:
            `tf.string` tensor `(N,)`.
        """
        if isinstance(ids, tf.RaggedTensor):
            ids = ids.to_tensor(PAD_ID)
        ids = tf.cast(tf.convert_to_tensor(ids), tf.int32)  # (N, L)
        if ids.shape.rank != 2:
            raise ValueError(
                "Invalid shape for argument `ids`: expected (N, L). "
                f"Received: ids.shape={tuple(ids.shape)}"
            )
        utils.check_token_ids("ids", ids, self.vocabulary_size)
        # In a graph (an exported model) values are not known when traced:
        # an id outside the vocabulary reads as [UNK], never out of range.
        outside = tf.logical_or(ids < 0, ids >= self.vocabulary_size)
        ids = tf.where(outside, UNK_ID, ids)
        # Keep what comes before the first [END].
        after_end = tf.cumsum(tf.cast(ids == END_ID, tf.int32), axis=1) > 0
        keep = tf.logical_and(~after_end, ids > UNK_ID)
        keep = tf.logical_or(keep, ids == UNK_ID)
        ids = tf.ragged.boolean_mask(ids, keep)
        return self._wordpiece.detokenize(ids)

    def id_to_token(self, ids):
        """Ids to their token strings, e.g. for attention plot labels."""
        utils.check_token_ids("ids", ids, self.vocabulary_size)
        return tf.gather(self._tokens, ids)
