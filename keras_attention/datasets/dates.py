"""Human-written dates → ISO 8601: a generated, seeded data set.

`"3rd of March 1997"`, `"Tuesday, 4 July 2023"`, `"07/04/23"`,
`"4 Jul 2023"`, ... → `"2023-07-04"`. A classic first task for attention: the
model has to find the day, month and year wherever the format put them.

Dates are drawn uniformly from 1950-01-01 to 2049-12-31, so two-digit years
are unambiguous (`"23"` → 2023, `"97"` → 1997); numeric dates with slashes
are US-style month/day (`"07/04/23"` is July 4), with dots European
day.month (`"04.07.2023"`).

Text is encoded character by character. Ids 0-3 are reserved (pad, start,
end, unknown), as everywhere in keras-attention.
"""

import datetime
import random

import numpy as np

from keras_attention.constants import END_ID
from keras_attention.constants import PAD_ID
from keras_attention.constants import RESERVED_TOKENS
from keras_attention.constants import START_ID
from keras_attention.constants import UNK_ID

RESERVED = list(RESERVED_TOKENS)

FIRST_DAY = datetime.date(1950, 1, 1)
NUM_DAYS = (datetime.date(2049, 12, 31) - FIRST_DAY).days + 1
TARGET_LENGTH = len("2023-07-04") + 1  # with the start or end token

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
SOURCE_VOCABULARY = RESERVED + list(
    " ,./-0123456789" + _LETTERS + _LETTERS.upper()
)
TARGET_VOCABULARY = RESERVED + list("-0123456789")

_MONTHS = [datetime.date(2001, m, 1).strftime("%B") for m in range(1, 13)]
_DAYS = [datetime.date(2001, 1, d).strftime("%A") for d in range(1, 8)]


def _ordinal(day):
    if day in (11, 12, 13):
        return f"{day}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _formats(date):
    """Every written form of `date` this data set knows (21 of them)."""
    d, m, y = date.day, date.month, date.year
    month, mon = _MONTHS[m - 1], _MONTHS[m - 1][:3]
    weekday = _DAYS[date.weekday()]
    wday = weekday[:3]
    yy = f"{y % 100:02d}"
    return [
        f"{d} {month} {y}",
        f"{d} {mon} {y}",
        f"{month} {d}, {y}",
        f"{mon} {d}, {y}",
        f"{mon}. {d}, {y}",
        f"{weekday}, {d} {month} {y}",
        f"{weekday}, {month} {d}, {y}",
        f"{wday} {d} {mon} {y}",
        f"{_ordinal(d)} of {month} {y}",
        f"the {_ordinal(d)} of {month}, {y}",
        f"{month} {_ordinal(d)}, {y}",
        f"{m:02d}/{d:02d}/{yy}",
        f"{m}/{d}/{yy}",
        f"{m:02d}/{d:02d}/{y}",
        f"{d:02d}.{m:02d}.{y}",
        f"{d}.{m}.{yy}",
        f"{y}-{m:02d}-{d:02d}",
        f"{y}/{m:02d}/{d:02d}",
        f"{d:02d}-{mon}-{y}",
        f"{d}-{mon}-{yy}",
        f"{y}{m:02d}{d:02d}",
    ]


NUM_FORMATS = len(_formats(FIRST_DAY))


def generate(num_examples, seed=0):
    """Random `(human_date, iso_date)` string pairs.

    Each pair draws a date, one of the formats and a letter case (as
    written, lower or upper) uniformly.

    Args:
        num_examples: int, number of pairs.
        seed: int. Defaults to `0`.

    Returns:
        A list of `(str, str)` pairs.

    Examples:
        >>> generate(2, seed=1)  # doctest: +SKIP
        [('Thu 9 Sep 1971', '1971-09-09'), ('11/24/33', '2033-11-24')]
    """
    rng = random.Random(seed)
    pairs = []
    for _ in range(num_examples):
        date = FIRST_DAY + datetime.timedelta(days=rng.randrange(NUM_DAYS))
        text = rng.choice(_formats(date))
        case = rng.random()
        if case < 0.15:
            text = text.lower()
        elif case < 0.25:
            text = text.upper()
        pairs.append((text, date.isoformat()))
    return pairs


def encode(texts, vocabulary, length, add_start=False, add_end=False):
    """Character ids, padded with 0 to `length` (and truncated).

    Args:
        texts: list of strings.
        vocabulary: list of tokens (`SOURCE_VOCABULARY`, ...).
        length: int, the width of the result.
        add_start: whether to prepend the start id. Defaults to `False`.
        add_end: whether to append the end id. Defaults to `False`.

    Returns:
        int32 array `(N, length)`; unknown characters get id 3.
    """
    index = {token: i for i, token in enumerate(vocabulary)}
    ids = np.zeros((len(texts), length), "int32")
    for row, text in enumerate(texts):
        tokens = [index.get(c, UNK_ID) for c in text]
        tokens = [START_ID] * add_start + tokens + [END_ID] * add_end
        tokens = tokens[:length]
        ids[row, : len(tokens)] = tokens
    return ids


def decode(ids, vocabulary):
    """Strings from ids, stopping at the first end or pad id."""
    texts = []
    for row in np.asarray(ids):
        chars = []
        for token in row:
            if token in (END_ID, PAD_ID):
                break
            if token >= len(RESERVED):
                chars.append(vocabulary[token])
        texts.append("".join(chars))
    return texts


def load_data(num_train=20000, num_test=2000, seed=0, source_length=None):
    """Training and held-out arrays ready for `Seq2Seq.fit`.

    Held-out dates are drawn with another seed and never appear (as the
    same written string) in the training set.

    Args:
        num_train: int. Defaults to `20000`.
        num_test: int. Defaults to `2000`.
        seed: int. Defaults to `0`.
        source_length: width of the source arrays, or `None` for the
            longest string of either split.

    Returns:
        `(train, test)`, each a dict with `"source"` int32 `(N, S)`,
        `"target_in"` int32 `(N, 11)` (start + ISO characters),
        `"target_out"` int32 `(N, 11)` (ISO characters + end),
        `"text"` and `"iso"` (lists of strings).

    Examples:
        >>> train, test = load_data(100, 10)
        >>> tuple(train["target_in"].shape)
        (100, 11)
    """
    train_pairs = generate(num_train, seed=seed)
    seen = {text for text, _ in train_pairs}
    test_pairs, offset = [], 1
    while len(test_pairs) < num_test:
        candidates = generate(num_test, seed=seed + 7919 * offset)
        test_pairs += [p for p in candidates if p[0] not in seen]
        offset += 1
    test_pairs = test_pairs[:num_test]
    if source_length is None:
        source_length = max(len(t) for t, _ in train_pairs + test_pairs)

    def arrays(pairs):
        texts = [text for text, _ in pairs]
        isos = [iso for _, iso in pairs]
        return {
            "source": encode(texts, SOURCE_VOCABULARY, source_length),
            "target_in": encode(
                isos, TARGET_VOCABULARY, TARGET_LENGTH, add_start=True
            ),
            "target_out": encode(
                isos, TARGET_VOCABULARY, TARGET_LENGTH, add_end=True
            ),
            "text": texts,
            "iso": isos,
        }

    return arrays(train_pairs), arrays(test_pairs)
