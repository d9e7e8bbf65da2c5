"""Translation pairs: a generated English → Spanish toy grammar, TSV corpora.

`toy_translation` makes sentence pairs from a small grammar that has what
makes translation need attention: adjectives move after the noun
("the red car" → "el coche rojo"), and determiners and adjectives agree with
the noun's gender and number ("the red house" → "la casa roja",
"these red houses" → "estas casas rojas").

`load_tsv_pairs` reads real parallel corpora in the Anki/Tatoeba format.
"""

import warnings

import numpy as np

# noun: (singular, plural, gender)
NOUNS = {
    "cat": ("gato", "gatos", "m"),
    "dog": ("perro", "perros", "m"),
    "house": ("casa", "casas", "f"),
    "car": ("coche", "coches", "m"),
    "book": ("libro", "libros", "m"),
    "table": ("mesa", "mesas", "f"),
    "city": ("ciudad", "ciudades", "f"),
    "girl": ("niña", "niñas", "f"),
    "boy": ("niño", "niños", "m"),
    "tree": ("árbol", "árboles", "m"),
    "window": ("ventana", "ventanas", "f"),
    "flower": ("flor", "flores", "f"),
    "river": ("río", "ríos", "m"),
    "door": ("puerta", "puertas", "f"),
    "bird": ("pájaro", "pájaros", "m"),
    "apple": ("manzana", "manzanas", "f"),
    "horse": ("caballo", "caballos", "m"),
    "chair": ("silla", "sillas", "f"),
}
PLURALS = {
    "cat": "cats", "dog": "dogs", "house": "houses", "car": "cars",
    "book": "books", "table": "tables", "city": "cities", "girl": "girls",
    "boy": "boys", "tree": "trees", "window": "windows",
    "flower": "flowers", "river": "rivers", "door": "doors",
    "bird": "birds", "apple": "apples", "horse": "horses",
    "chair": "chairs",
}  # fmt: skip
# adjective: masculine singular stem rule ("o" adjectives inflect for gender)
ADJECTIVES = {
    "large": "grande",
    "small": "pequeño",
    "red": "rojo",
    "white": "blanco",
    "black": "negro",
    "old": "viejo",
    "new": "nuevo",
    "beautiful": "bonito",
    "tall": "alto",
    "green": "verde",
    "blue": "azul",
    "happy": "feliz",
    "quiet": "tranquilo",
    "cheap": "barato",
}
ADVERBS = {"very": "muy", "quite": "bastante", "too": "demasiado"}
# English determiner -> {(gender, number): Spanish}
DETERMINERS_SINGULAR = {
    "the": {"m": "el", "f": "la"},
    "a": {"m": "un", "f": "una"},
    "this": {"m": "este", "f": "esta"},
    "that": {"m": "ese", "f": "esa"},
    "my": {"m": "mi", "f": "mi"},
}
DETERMINERS_PLURAL = {
    "the": {"m": "los", "f": "las"},
    "these": {"m": "estos", "f": "estas"},
    "those": {"m": "esos", "f": "esas"},
    "my": {"m": "mis", "f": "mis"},
    "some": {"m": "unos", "f": "unas"},
}


def inflect(adjective, gender, plural):
    """Spanish adjective agreeing with a noun's gender and number."""
    word = ADJECTIVES[adjective]
    if word.endswith("o"):
        word = word[:-1] + ("a" if gender == "f" else "o")
    if not plural:
        return word
    if word.endswith("z"):
        return word[:-1] + "ces"
    return word + ("s" if word[-1] in "aeiou" else "es")


def _noun_phrase(rng, plural, with_adjective):
    """(English words, Spanish words, gender) of a random noun phrase."""
    noun = rng.choice(list(NOUNS))
    singular, plural_es, gender = NOUNS[noun]
    table = DETERMINERS_PLURAL if plural else DETERMINERS_SINGULAR
    determiner = rng.choice(list(table))
    english = [determiner]
    spanish = [table[determiner][gender]]
    adjective = rng.choice(list(ADJECTIVES)) if with_adjective else None
    if adjective:
        english.append(adjective)
    english.append(PLURALS[noun] if plural else noun)
    spanish.append(plural_es if plural else singular)
    if adjective:  # the adjective moves after the noun in Spanish
        spanish.append(inflect(adjective, gender, plural))
    return english, spanish, gender


def _predicate(rng, gender, plural):
    adjective = rng.choice(list(ADJECTIVES))
    english, spanish = [], []
    if rng.random() < 0.5:
        adverb = rng.choice(list(ADVERBS))
        english.append(adverb)
        spanish.append(ADVERBS[adverb])
    english.append(adjective)
    spanish.append(inflect(adjective, gender, plural))
    return english, spanish


def _sentence(rng):
    """One random (English, Spanish) sentence pair."""
    kind = rng.integers(4)
    plural = bool(rng.random() < 0.4)
    subject_en, subject_es, gender = _noun_phrase(
        rng, plural, with_adjective=rng.random() < 0.5
    )
    if kind <= 1:  # "this cat is very large" -> "este gato es muy grande"
        pred_en, pred_es = _predicate(rng, gender, plural)
        verb = ("are", "son") if plural else ("is", "es")
        return subject_en + [verb[0]] + pred_en, subject_es + [
            verb[1]
        ] + pred_es
    if kind == 2:  # "the cat sees a red car" -> "el gato ve un coche rojo"
        object_en, object_es, _ = _noun_phrase(
            rng, bool(rng.random() < 0.4), with_adjective=True
        )
        verb = ("see", "ven") if plural else ("sees", "ve")
        return subject_en + [verb[0]] + object_en, subject_es + [
            verb[1]
        ] + object_es
    # Two subjects: a mixed-gender pair agrees in the masculine plural.
    other_en, other_es, other_gender = _noun_phrase(
        rng, bool(rng.random() < 0.4), with_adjective=False
    )
    both = "f" if gender == other_gender == "f" else "m"
    pred_en, pred_es = _predicate(rng, both, True)
    return (
        subject_en + ["and"] + other_en + ["are"] + pred_en,
        subject_es + ["y"] + other_es + ["son"] + pred_es,
    )


def _english(words):
    """Join words, with "an" before a vowel ("an apple", "an old car")."""
    words = [
        "an" if word == "a" and following[0] in "aeiou" else word
        for word, following in zip(words, words[1:] + ["."])
    ]
    return " ".join(words)


def toy_translation(num_pairs=20000, seed=0):
    """Distinct English → Spanish sentence pairs from a toy grammar.

    Covers adjective reordering ("the red car" → "el coche rojo"), gender
    and number agreement of determiners and adjectives, adverbs, and
    masculine-plural agreement of mixed subjects. Hundreds of thousands of
    distinct sentences are possible.

    Args:
        num_pairs: number of distinct pairs. Defaults to `20000`.
        seed: random seed. Defaults to `0`.

    Returns:
        Tuple `(sources, targets)` of lists of strings.

    Examples:
        >>> english, spanish = toy_translation(3, seed=1)
        >>> len(english), len(spanish)
        (3, 3)
    """
    if num_pairs < 1:
        raise ValueError(
            f"`num_pairs` must be positive. Received: {num_pairs=}"
        )
    rng = np.random.default_rng(seed)
    pairs = {}
    for _ in range(num_pairs * 50):
        english, spanish = _sentence(rng)
        pairs.setdefault(_english(english), " ".join(spanish))
        if len(pairs) == num_pairs:
            break
    else:
        raise ValueError(
            f"Could not generate {num_pairs} distinct pairs; got {len(pairs)}"
        )
    return list(pairs), list(pairs.values())


def load_tsv_pairs(path, skip_malformed=False, max_pairs=None):
    """Read `source<TAB>target[<TAB>attribution...]` lines (Anki/Tatoeba).

    Args:
        path: path of a UTF-8 text file.
        skip_malformed: when `False` (default), a line without two non-empty
            tab-separated fields raises a `ValueError` naming its line
            number; when `True`, such lines are skipped and a warning gives
            their count.
        max_pairs: read at most this many pairs. Defaults to `None` (all).

    Returns:
        Tuple `(sources, targets)` of lists of strings.
    """
    sources, targets, skipped = [], [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue  # blank lines are not data
            fields = line.split("\t")
            if (
                len(fields) < 2
                or not fields[0].strip()
                or not fields[1].strip()
            ):
                if not skip_malformed:
                    raise ValueError(
                        f"{path}:{number}: expected 'source<TAB>target', "
                        f"received {line[:80]!r} (pass skip_malformed=True "
                        "to skip such lines)"
                    )
                skipped += 1
                continue
            sources.append(fields[0].strip())
            targets.append(fields[1].strip())
            if max_pairs is not None and len(sources) >= max_pairs:
                break
    if skipped:
        warnings.warn(
            f"{path}: skipped {skipped} malformed lines", stacklevel=2
        )
    return sources, targets
