"""Algorithmic sequence tasks: sorting, copying and reversing digit strings.

Small, exactly scorable tasks that show what attention does: to copy or
reverse, output position `i` must find source position `i` (or `S - 1 - i`);
to sort, it must find the next-smallest source element wherever it sits.
Both are generated offline from a seed.

Token ids: 0 pad, 1 start, 2 end, 3 unknown (as everywhere in
keras-attention), then the symbols: id `4 + k` is symbol `k`, so with the
default ten symbols the vocabulary is 14 ids and symbol `k` prints as the
digit `k`.
"""

import numpy as np

from keras_attention.constants import END_ID
from keras_attention.constants import PAD_ID
from keras_attention.constants import START_ID

NUM_RESERVED = 4


def vocabulary_size(num_symbols=10):
    """Number of token ids: the 4 reserved ones plus `num_symbols`."""
    return NUM_RESERVED + num_symbols


def _pairs(sources, targets, length):
    """Pad to `length` and add start/end: the arrays `fit` wants."""
    num = len(sources)
    source = np.zeros((num, length), "int32")
    target_in = np.zeros((num, length + 1), "int32")
    target_out = np.zeros((num, length + 1), "int32")
    lengths = np.array([len(s) for s in sources], "int32")
    for row, (src, tgt) in enumerate(zip(sources, targets)):
        source[row, : len(src)] = src
        target_in[row, : len(tgt) + 1] = [START_ID, *tgt]
        target_out[row, : len(tgt) + 1] = [*tgt, END_ID]
    return {
        "source": source,
        "target_in": target_in,
        "target_out": target_out,
        "length": lengths,
    }


def _random_sequences(num_examples, min_length, max_length, num_symbols, rng):
    if not 1 <= min_length <= max_length:
        raise ValueError(
            "Expected `1 <= min_length <= max_length`. Received: "
            f"{min_length=}, {max_length=}"
        )
    if num_symbols < 1:
        raise ValueError(
            f"`num_symbols` must be >= 1. Received: {num_symbols=}"
        )
    lengths = rng.integers(min_length, max_length + 1, size=num_examples)
    return [
        rng.integers(0, num_symbols, size=length) + NUM_RESERVED
        for length in lengths
    ]


def sorting(
    num_examples,
    min_length=4,
    max_length=10,
    num_symbols=10,
    seed=0,
    source_length=None,
):
    """Random digit sequences and the same digits sorted ascending.

    `[7, 3, 9, 3]` → `[3, 3, 7, 9]` (as symbols; the ids are 4 higher).

    Args:
        num_examples: number of sequences `N`.
        min_length: shortest sequence. Defaults to `4`.
        max_length: longest sequence. Defaults to `10`.
        num_symbols: size of the alphabet; ids `4 .. 4 + num_symbols - 1`.
            Defaults to `10` (the digits).
        seed: random seed. Defaults to `0`.
        source_length: width `S` of the padded arrays. Defaults to
            `max_length`.

    Returns:
        dict of int32 arrays: `"source"` `(N, S)` (padded with 0),
        `"target_in"` `(N, S + 1)` (start id 1, then the sorted ids),
        `"target_out"` `(N, S + 1)` (the sorted ids, then the end id 2) and
        `"length"` `(N,)`.

    Examples:
        >>> data = sorting(2, min_length=3, max_length=3, seed=1)
        >>> data["source"].shape, data["target_in"].shape
        ((2, 3), (2, 4))
        >>> ordered = np.sort(data["source"], axis=-1)
        >>> bool((ordered == data["target_out"][:, :3]).all())
        True
    """
    rng = np.random.default_rng(seed)
    sources = _random_sequences(
        num_examples, min_length, max_length, num_symbols, rng
    )
    targets = [np.sort(s) for s in sources]
    return _pairs(sources, targets, source_length or max_length)


def copy_reverse(
    num_examples,
    min_length=4,
    max_length=10,
    num_symbols=10,
    reverse=True,
    seed=0,
    source_length=None,
):
    """Random symbol sequences and their reversal (or an exact copy).

    `[7, 3, 9]` → `[9, 3, 7]` with `reverse=True`, `[7, 3, 9]` otherwise.
    Reversal is the task of Sutskever et al. 2014's source-reversal trick
    and of Bahdanau et al. 2015's length experiment in small: without
    attention, the whole sequence must squeeze through one state vector.

    Args:
        num_examples: number of sequences `N`.
        min_length: shortest sequence. Defaults to `4`.
        max_length: longest sequence. Defaults to `10`.
        num_symbols: size of the alphabet; ids `4 .. 4 + num_symbols - 1`.
            Defaults to `10`.
        reverse: reverse (`True`) or copy (`False`). Defaults to `True`.
        seed: random seed. Defaults to `0`.
        source_length: width `S` of the padded arrays. Defaults to
            `max_length`.

    Returns:
        dict of int32 arrays, as `sorting`: `"source"` `(N, S)`,
        `"target_in"` `(N, S + 1)`, `"target_out"` `(N, S + 1)` and
        `"length"` `(N,)`.

    Examples:
        >>> data = copy_reverse(1, min_length=3, max_length=3, seed=0)
        >>> source, target = data["source"][0], data["target_out"][0]
        >>> bool((source[::-1] == target[:3]).all()), int(target[3])
        (True, 2)
    """
    rng = np.random.default_rng(seed)
    sources = _random_sequences(
        num_examples, min_length, max_length, num_symbols, rng
    )
    targets = [s[::-1] if reverse else s for s in sources]
    return _pairs(sources, targets, source_length or max_length)


def to_symbols(ids, separator=""):
    """Symbol strings from ids, stopping at the first end or pad id.

    Args:
        ids: int array `(N, T)`.
        separator: put between symbols (use `" "` for more than ten
            symbols). Defaults to `""`.

    Returns:
        A list of `N` strings; reserved ids other than pad/end print `?`.

    Examples:
        >>> to_symbols([[7, 4, 13, 2, 0]])
        ['309']
    """
    texts = []
    for row in np.asarray(ids):
        symbols = []
        for token in row:
            if token in (END_ID, PAD_ID):
                break
            symbols.append(
                str(token - NUM_RESERVED) if token >= NUM_RESERVED else "?"
            )
        texts.append(separator.join(symbols))
    return texts
