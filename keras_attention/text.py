"""WordPiece tokenization with tensorflow-text, savable in a SavedModel.

`build_vocabulary` learns a WordPiece vocabulary offline from a list of
texts (tensorflow-text's BERT vocabulary generator); `Tokenizer` maps strings
to padded id tensors and back with `FastWordpieceTokenizer`, entirely in
TensorFlow ops, so it runs inside `tf.data` pipelines and inside exported
SavedModels (the translator of `keras_attention.export`).

Reserved ids everywhere: pad 0, start 1, end 2, unknown 3.
"""

import collections
import os

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer
from tensorflow_text.tools.wordpiece_vocab import (
    wordpiece_tokenizer_learner_lib as learner,
)

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


# Detokenized words are joined by spaces; these (RE2 pattern, rewrite)
# pairs attach punctuation the way the text is written, in order.
_JOIN_RULES = (
    (r" ([.,!?;:%)\]}»…])", r"\1"),  # "dijo ." → "dijo."
    (r"([¿¡(\[{«]) ", r"\1"),  # "¿ cómo" → "¿cómo"
    (r"(\pL) ([-'’]) (\pL)", r"\1\2\3"),  # "don ' t" → "don't"
    (r"(\pN)([.:]) (\pN)", r"\1\2\3"),  # "3. 5" → "3.5"
    (r"(\pN), (\pN{3})\b", r"\1,\2"),  # "1, 000" → "1,000"
)


def normalize(texts, lower_case=True):
    """Clean, (optionally) lower-case and NFKC-normalise a string tensor.

    Invalid UTF-8 bytes become U+FFFD instead of raising, so any bytes a
    client sends can be tokenized.

    Args:
        texts: `tf.string` tensor of any shape.
        lower_case: whether to case-fold. Defaults to `True`.

    Returns:
        `tf.string` tensor of the same shape.
    """
    texts = tf.strings.unicode_transcode(
        texts, "UTF-8", "UTF-8", errors="replace"
    )
    if lower_case:
        texts = tf_text.case_fold_utf8(texts)
    return tf_text.normalize_utf8(texts, "NFKC")


def join_words(texts):
    """Attach punctuation in space-separated words: natural text.

    No space before `. , ! ? ; : % ) ] } » …`, none after `¿ ¡ ( [ { «`,
    none around an apostrophe or hyphen inside a word, none inside a
    number (`3.5`, `1,000`, `10:30`). Runs in TensorFlow ops (so also
    inside an exported translator).

    Args:
        texts: `tf.string` tensor of any shape.

    Returns:
        `tf.string` tensor of the same shape.

    Examples:
        >>> join_words(["¿ dónde está tom ?"]).numpy()[0].decode()
        '¿dónde está tom?'
    """
    for pattern, rewrite in _JOIN_RULES:
        texts = tf.strings.regex_replace(texts, pattern, rewrite)
    return texts


def _check_strings(name, values, error=TypeError):
    """`values` as a list of Python strings, or an `error` naming `name`."""
    expected = (
        f"Invalid value for argument `{name}`: expected a list of strings"
    )
    if isinstance(values, (str, bytes)):
        raise error(
            f"{expected}, not one string (it would be read as characters). "
            f"Received: {name}={values[:40]!r}"
        )
    try:
        values = list(values)
    except TypeError:  # None, a number: not an iterable
        raise error(f"{expected}. Received: {name}={values!r:.40}") from None
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise error(f"{expected}. Received: {name}[{index}]={value!r:.40}")
    return values


def _count_words(texts, lower_case, batch_size):
    """Word counts after normalisation and the BERT whitespace/punctuation
    split (the split `Tokenizer` applies before WordPiece)."""
    splitter = BasicTokenizer(lower_case=False)  # case done by `normalize`
    counts = collections.Counter()
    for start in range(0, len(texts), batch_size):
        batch = tf.constant(texts[start : start + batch_size])
        words = splitter.tokenize(normalize(batch, lower_case))
        counts.update(words.flat_values.numpy())
    return {word.decode(): count for word, count in counts.items()}


def _learn(counts, size, min_count):
    """The WordPiece vocabulary of the smallest count threshold (at least
    `min_count`) that fits in `size`: a binary search that, unlike the
    learner's own, never overshoots and first tries `min_count` alone."""
    params = learner.Params(
        upper_thresh=None,
        lower_thresh=min_count,
        num_iterations=4,
        max_input_tokens=int(5e6),
        max_token_length=50,
        max_unique_chars=1000,
        vocab_size=size,
        slack_ratio=0.05,
        include_joiner_token=True,
        joiner="##",
        reserved_tokens=RESERVED_TOKENS,
    )
    counts = learner.get_input_words(
        counts.items(), RESERVED_TOKENS, params.max_token_length
    )
    allowed = learner.get_allowed_chars(counts, params.max_unique_chars)
    counts = learner.filter_input_words(
        counts, allowed, params.max_input_tokens
    )
    if not counts:
        raise ValueError(
            "`texts` holds no word of at most "
            f"{params.max_token_length} characters"
        )
    low, high = min_count, max(count for _, count in counts)
    best, thresh = None, min_count  # everything often fits: try it first
    while low <= high:
        vocabulary = learner.learn_with_thresh(counts, thresh, params)
        if len(vocabulary) > size:
            low = thresh + 1
        else:
            best, high = vocabulary, thresh - 1
            if len(vocabulary) >= (1 - params.slack_ratio) * size:
                break
        thresh = (low + high) // 2
    if best is None:
        raise ValueError(
            f"`size`={size} is too small: the corpus's characters alone "
            f"need {len(vocabulary)} tokens"
        )
    return list(best)


def build_vocabulary(
    texts, size, min_count=1, lower_case=True, batch_size=1024
):
    """Learn a WordPiece vocabulary from texts (offline, no download).

    Whole words seen at least `min_count` times come first; the learner
    (tensorflow-text's BERT vocabulary learner) raises its count threshold
    until the vocabulary fits in `size`, so a small corpus reaches the size
    it asks for (up to its number of distinct words and pieces) and keeps
    common words whole. A few thousand sentences: `min_count=1` and a size
    of 4,000–8,000 work well.

    Args:
        texts: iterable of Python strings.
        size: target vocabulary size (an upper bound, reached within 5%
            when the corpus has enough distinct words).
        min_count: smallest count of a word or piece that may enter the
            vocabulary. Defaults to `1`.
        lower_case: whether texts are case-folded first; use the same value
            for the `Tokenizer`. `False` keeps the casing, so translations
            come out cased. Defaults to `True`.
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
    texts = _check_strings("texts", texts)
    if not texts:
        raise ValueError("`texts` is empty: nothing to learn a vocabulary from")
    utils.check_number("size", size, len(RESERVED_TOKENS), integer=True)
    utils.check_positive_int("min_count", min_count)
    utils.check_choice("lower_case", lower_case, (True, False))
    utils.check_positive_int("batch_size", batch_size)
    counts = _count_words(texts, lower_case, batch_size)
    if not counts:
        raise ValueError(
            "`texts` holds no words (only blanks): nothing to learn a "
            "vocabulary from"
        )
    return _learn(counts, size, min_count)


def _check_vocabulary(vocabulary):
    """`vocabulary` as a list of distinct tokens after the reserved ones,
    or a `ValueError` naming it."""
    vocabulary = _check_strings("vocabulary", vocabulary, ValueError)
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

    `tokenize` = normalize (UTF-8 repair, case folding unless
    `lower_case=False`, NFKC) → BERT-style split on whitespace and
    punctuation → `FastWordpieceTokenizer` → add `[START]`/`[END]` →
    truncate → pad with 0. `detokenize` joins the pieces into natural text
    (`join_words`: `"¿Dónde está?"`, not `"¿ dónde está ?"`). A
    `tf.Module`: attach it to a module you `tf.saved_model.save` and it is
    exported with it.

    Args:
        vocabulary: list of token strings whose first four are the
            reserved ones (as `build_vocabulary` returns), or the path (a
            string or `os.PathLike`) of a text file with one token per line.
        max_length: default length of `__call__`'s output. Defaults to
            `None` (the longest in the batch).
        lower_case: whether texts are case-folded; must match the
            `build_vocabulary` call that made `vocabulary`. Defaults to
            `True`.
        unknown_text: what `detokenize` writes for an unknown id (`[UNK]`,
            a word the vocabulary cannot spell): SentencePiece's `"⁇"` by
            default, so a missing word stays visible; `""` drops it.

    Examples:
        >>> vocab = build_vocabulary(["the cat sat"] * 20, size=40)
        >>> tokenizer = Tokenizer(vocab)
        >>> ids = tokenizer(["The cat sat"])
        >>> tokenizer.detokenize(ids).numpy()[0].decode()
        'the cat sat'
    """

    def __init__(
        self,
        vocabulary,
        max_length=None,
        lower_case=True,
        unknown_text="⁇",
        name=None,
    ):
        super().__init__(name=name)
        if isinstance(vocabulary, (str, os.PathLike)):
            with open(vocabulary, encoding="utf-8") as f:
                vocabulary = [line.rstrip("\n") for line in f]
        vocabulary = _check_vocabulary(vocabulary)
        utils.check_number(
            "max_length", max_length, 1, integer=True, allow_none=True
        )
        utils.check_choice("lower_case", lower_case, (True, False))
        if not isinstance(unknown_text, str):
            raise TypeError(
                "`unknown_text` must be a string. Received: "
                f"{type(unknown_text).__name__}"
            )
        self.vocabulary = vocabulary
        self.max_length = max_length
        self.lower_case = lower_case
        self.unknown_text = unknown_text
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
        return {
            "vocabulary": self.vocabulary,
            "max_length": self.max_length,
            "lower_case": self.lower_case,
            "unknown_text": self.unknown_text,
        }

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
        texts = normalize(texts, self.lower_case)
        pieces = self._wordpiece.tokenize(texts)  # (N, None)
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
        return self.pad(ids, max_length)

    def pad(self, ids, max_length):
        """`tokenize`'s ragged ids `(N, None)` to `(N, max_length)`.

        Longer rows lose their last pieces but keep `[END]`; shorter ones
        are padded with 0.
        """
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
        """Ids `(N, L)` back to natural text `(N,)`.

        Decoding stops at the first `[END]`; `[PAD]` and `[START]` are
        removed, `[UNK]` becomes `unknown_text`, pieces are joined into
        words and punctuation is attached (`join_words`).

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
        keep = tf.logical_and(~after_end, ids >= UNK_ID)
        if not self.unknown_text:
            keep = tf.logical_and(keep, ids != UNK_ID)
        words = self._wordpiece.detokenize(tf.ragged.boolean_mask(ids, keep))
        if self.unknown_text:  # the detokenizer writes `[UNK]` words
            words = tf.strings.regex_replace(
                words, r"\[UNK\]", self.unknown_text.replace("\\", "\\\\")
            )
        return join_words(words)

    def id_to_token(self, ids):
        """Ids to their token strings, e.g. for attention plot labels."""
        utils.check_token_ids("ids", ids, self.vocabulary_size)
        return tf.gather(self._tokens, ids)


def translation_batches(
    sources,
    targets,
    source_tokenizer,
    target_tokenizer,
    batch_size=64,
    max_length=None,
    shuffle=True,
    seed=0,
):
    """A `tf.data` pipeline of translation pairs, batched by length.

    Each pair is tokenized once; pairs of similar target length are batched
    together (`bucket_by_sequence_length`) and padded to the longest in
    their batch, so a recurrent model spends little time on padding. Yields
    `({"source": (B, S), "target_in": (B, T)}, target_out (B, T))` for
    `fit`: teacher forcing, `target_out` is `target_in` shifted left; train
    with a loss that ignores the padding id 0.

    Args:
        sources: list of source strings.
        targets: list of target strings, as many.
        source_tokenizer: `Tokenizer` of the sources.
        target_tokenizer: `Tokenizer` of the targets.
        batch_size: pairs per batch. Defaults to `64`.
        max_length: truncate sources to this many ids and targets to this
            many `target_in` ids (`[END]` kept). Defaults to `None`.
        shuffle: reshuffle the pairs every epoch. Defaults to `True`.
        seed: shuffle seed. Defaults to `0`.

    Returns:
        A `tf.data.Dataset`.
    """
    if len(sources) != len(targets) or not len(sources):
        raise ValueError(
            "`sources` and `targets` must be non-empty and as long as each "
            f"other. Received: {len(sources)} and {len(targets)} texts"
        )
    utils.check_positive_int("batch_size", batch_size)
    source = source_tokenizer.tokenize(sources)
    target = target_tokenizer.tokenize(targets)
    if max_length is not None:
        source = source_tokenizer.pad(source, max_length)
        target = target_tokenizer.pad(target, max_length + 1)
        source = tf.RaggedTensor.from_tensor(source, padding=PAD_ID)
        target = tf.RaggedTensor.from_tensor(target, padding=PAD_ID)
    dataset = tf.data.Dataset.from_tensor_slices(
        (source.to_tensor(), source.row_lengths())
        + (target.to_tensor(), target.row_lengths())
    ).map(lambda s, s_len, t, t_len: (s[:s_len], t[:t_len]))
    if shuffle:
        dataset = dataset.shuffle(len(sources), seed=seed)
    # Eight buckets of about as many pairs, by target length.
    lengths = target.row_lengths().numpy()
    quantiles = np.quantile(lengths, np.linspace(0, 1, 9)[1:-1])
    boundaries = sorted({int(q) + 1 for q in quantiles})
    dataset = dataset.bucket_by_sequence_length(
        lambda source, target: tf.shape(target)[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
    )
    # The number of batches, so that progress bars know it.
    per_bucket = np.bincount(np.searchsorted(boundaries, lengths, "right"))
    batches = int(np.sum(np.ceil(per_bucket / batch_size)))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))

    def teacher_forcing(source, target):
        return {"source": source, "target_in": target[:, :-1]}, target[:, 1:]

    return dataset.map(teacher_forcing).prefetch(tf.data.AUTOTUNE)
