import numpy as np
import pytest
import tensorflow as tf

from keras_attention import text
from keras_attention.datasets import toy_translation

pytestmark = (
    pytest.mark.tensorflow_only
)  # the `text` module is TensorFlow-only (tensorflow-text)

CORPUS = toy_translation(500, seed=0)[0]


@pytest.fixture(scope="module")
def tokenizer():
    return text.Tokenizer(text.build_vocabulary(CORPUS, size=300))


def test_vocabulary_starts_with_reserved_tokens(tokenizer):
    assert tokenizer.vocabulary[:4] == ["[PAD]", "[START]", "[END]", "[UNK]"]
    assert 4 < tokenizer.vocabulary_size <= 300
    assert any(token.startswith("##") for token in tokenizer.vocabulary)


def test_round_trip_of_corpus_sentences(tokenizer):
    ids = tokenizer(CORPUS[:50])
    assert ids.dtype == tf.int32
    np.testing.assert_array_equal(ids[:, 0], text.START_ID)
    decoded = [s.decode() for s in tokenizer.detokenize(ids).numpy()]
    assert decoded == CORPUS[:50]


def test_padding_and_end_marker(tokenizer):
    ids = tokenizer(["a cat", "the large red house is very old"]).numpy()
    short = ids[0]
    end = list(short).index(text.END_ID)
    assert (short[end + 1 :] == text.PAD_ID).all()
    assert ids.shape[1] == list(ids[1]).index(text.END_ID) + 1


def test_normalisation_lower_cases_and_keeps_accents(tokenizer):
    vocab = text.build_vocabulary(["la niña está feliz"] * 5, size=60)
    spanish = text.Tokenizer(vocab)
    decoded = spanish.detokenize(spanish(["LA Niña ESTÁ feliz"]))
    assert decoded.numpy()[0].decode() == "la niña está feliz"


def test_truncation_keeps_start_and_end(tokenizer):
    ids = tokenizer(["the cat is very large " * 20], max_length=8).numpy()
    assert ids.shape == (1, 8)
    assert ids[0, 0] == text.START_ID and ids[0, -1] == text.END_ID


def test_unknown_characters_and_bad_bytes_do_not_crash(tokenizer):
    ids = tokenizer([b"\xff\xfe broken \xc3", "", "Ω≈ç√"]).numpy()
    assert (ids[:, 0] == text.START_ID).all()
    assert text.UNK_ID in ids[2]
    assert list(ids[1][:2]) == [text.START_ID, text.END_ID]
    out = tokenizer.detokenize(ids).numpy()
    assert out[1] == b""


def test_detokenize_stops_at_first_end(tokenizer):
    ids = tokenizer(["the cat"]).numpy()
    garbage = np.concatenate([ids, tokenizer(["a dog"]).numpy()[:, 1:]], 1)
    assert tokenizer.detokenize(garbage).numpy()[0] == b"the cat"


def test_tokenizer_works_in_tf_data(tokenizer):
    dataset = tf.data.Dataset.from_tensor_slices(CORPUS[:8]).batch(4)
    batches = list(dataset.map(lambda s: tokenizer(s, max_length=16)))
    assert [tuple(b.shape) for b in batches] == [(4, 16), (4, 16)]


def test_tokenizer_saves_in_a_saved_model(tokenizer, tmp_path):
    module = tf.Module()
    module.tokenizer = tokenizer
    module.encode = tf.function(
        lambda s: tokenizer(s, max_length=12),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    np.testing.assert_array_equal(
        loaded.encode(tf.constant(CORPUS[:3])),
        tokenizer(CORPUS[:3], max_length=12),
    )


def test_vocabulary_file_round_trip(tokenizer, tmp_path):
    path = tmp_path / "vocab.txt"
    tokenizer.save_vocabulary(path)
    assert text.Tokenizer(str(path)).vocabulary == tokenizer.vocabulary
    assert text.Tokenizer(path).vocabulary == tokenizer.vocabulary  # a Path


RESERVED = list(text.RESERVED_TOKENS)


@pytest.mark.parametrize(
    "vocabulary",
    [None, 5, [0, 1, 2], RESERVED + [7], RESERVED + [b"bytes"], b"[PAD]"],
    ids=str,
)
def test_a_vocabulary_of_anything_but_strings_names_vocabulary(vocabulary):
    for make in (
        lambda: text.Tokenizer(vocabulary),
        lambda: text.Tokenizer(vocabulary=vocabulary),
        lambda: text.Tokenizer.from_config({"vocabulary": vocabulary}),
    ):
        with pytest.raises(ValueError, match="argument `vocabulary`"):
            make()


def test_bad_vocabulary_and_arguments_raise():
    with pytest.raises(ValueError, match="must start with"):
        text.Tokenizer(["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="size"):
        text.build_vocabulary(["a b"], size=3)
    with pytest.raises(ValueError, match="empty"):
        text.build_vocabulary([], size=30)
    with pytest.raises(ValueError, match="no words"):
        text.build_vocabulary([" ", ""], size=30)
    with pytest.raises(ValueError, match="`size`"):
        text.build_vocabulary(["abcdefghijklmnopqrstuvwxyz"], size=10)
    with pytest.raises(ValueError, match="`min_count`"):
        text.build_vocabulary(["a b"], size=30, min_count=0)
    with pytest.raises(ValueError, match="`lower_case`"):
        text.Tokenizer(["[PAD]", "[START]", "[END]", "[UNK]"], lower_case=1)
    with pytest.raises(TypeError, match="`unknown_text`"):
        text.Tokenizer(["[PAD]", "[START]", "[END]", "[UNK]"], unknown_text=0)


@pytest.mark.parametrize(
    "ids", [[[4, 5, 10_000]], [[4, -1, 5]], [[2**31 - 1]]], ids=str
)
def test_detokenize_out_of_range_is_an_error_eagerly(tokenizer, ids):
    with pytest.raises(ValueError, match="`ids`"):
        tokenizer.detokenize(np.array(ids))


def test_detokenize_out_of_range_reads_unk_in_a_graph(tokenizer):
    # In an exported graph values are unknown when traced: never index out
    # of range (that killed the process), read [UNK] instead.
    detokenize = tf.function(tokenizer.detokenize)
    inside = tokenizer(["the cat"])[:, 1:2]  # one real piece
    ids = tf.concat([inside, [[tokenizer.vocabulary_size + 7]], [[-3]]], 1)
    out = detokenize(ids).numpy()[0].decode()
    assert out.split()[1:] == ["⁇", "⁇"]


NAMES = ["Tom", "Mary", "Ana", "Luis"]
PLACES = ["la estación", "el parque", "Madrid", "la casa de Tom"]


def cased_corpus(n, seed=0):
    """Cased Spanish-like sentences with the punctuation of real text."""
    rng = np.random.default_rng(seed)
    forms = [
        "¿Dónde está {name}?",
        "¡{name} llegó a {place}!",
        "{name} dijo: «No sé», y se fue a {place}.",
        "Son las {hour}:30, {name}.",
        "{name} pagó {big} pesos (y 3.5 más) en {place}...",
        "It's {name}'s well-known house.",
    ]
    return [
        rng.choice(forms).format(
            name=rng.choice(NAMES),
            place=rng.choice(PLACES),
            hour=rng.integers(1, 13),
            big=f"{rng.integers(1, 10)},{rng.integers(100, 1000)}",
        )
        for _ in range(n)
    ]


def test_cased_round_trip_reads_as_the_original_text():
    corpus = cased_corpus(300)
    vocab = text.build_vocabulary(corpus, size=400, lower_case=False)
    tokenizer = text.Tokenizer(vocab, lower_case=False)
    decoded = tokenizer.detokenize(tokenizer(corpus)).numpy()
    assert [s.decode() for s in decoded] == corpus


@pytest.mark.parametrize(
    "words, joined",
    [
        ("¿ dónde está tom ?", "¿dónde está tom?"),
        ("hola , ¡ qué bien !", "hola, ¡qué bien!"),
        ("don ' t ( really )", "don't (really)"),
        ("well - known 3 . 5 1 , 000 10 : 30", "well-known 3.5 1,000 10:30"),
        ("a , b", "a, b"),
        ("", ""),
    ],
)
def test_join_words_attaches_punctuation(words, joined):
    assert text.join_words([words]).numpy()[0].decode() == joined


@pytest.mark.parametrize("unknown_text", ["", "<?>", "\\1 [UNK]"])
def test_unknown_text_replaces_unknown_ids(tokenizer, unknown_text):
    config = {**tokenizer.get_config(), "unknown_text": unknown_text}
    custom = text.Tokenizer.from_config(config)
    ids = custom(["the cat Ω"])
    for detokenize in (custom.detokenize, tf.function(custom.detokenize)):
        out = detokenize(ids).numpy()[0].decode()
        assert out == f"the cat {unknown_text}".strip()


def test_build_vocabulary_reaches_the_requested_size():
    # 3,000 made-up words with Zipf-like counts: a vocabulary can be any
    # size between the alphabet and every word.
    rng = np.random.default_rng(0)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    words = ["".join(rng.choice(letters, 6)) for _ in range(3000)]
    counts = (3000 / np.arange(1, 3001)).astype(int) + 1
    corpus = [" ".join([w] * c) for w, c in zip(words, counts)]
    sizes = {}
    for size in (300, 1000, 1500):
        vocab = text.build_vocabulary(corpus, size=size)
        assert 0.8 * size <= len(vocab) <= size, (size, len(vocab))
        sizes[size] = vocab
    # A large enough size keeps every word whole (min_count=1).
    everything = text.build_vocabulary(corpus, size=5000)
    assert set(words) <= set(everything)
    # A minimum count leaves rarer words out.
    frequent = text.build_vocabulary(corpus, size=5000, min_count=20)
    assert set(frequent) & set(words) == {
        w for w, c in zip(words, counts) if c >= 20
    }


def test_build_vocabulary_rejects_one_string_and_non_strings():
    with pytest.raises(TypeError, match="texts"):
        text.build_vocabulary("a string", size=50)
    with pytest.raises(TypeError, match="texts"):
        text.build_vocabulary(["ok", 3], size=50)
    with pytest.raises(ValueError, match="size"):
        text.build_vocabulary(["ok"], size=2.5)


def test_tokenizer_rejects_bad_vocabularies_and_inputs(tokenizer):
    reserved = list(text.RESERVED_TOKENS)
    with pytest.raises(ValueError, match="vocabulary"):
        text.Tokenizer(reserved + ["a", "a"])
    with pytest.raises(ValueError, match="vocabulary"):
        text.Tokenizer(reserved + [""])
    with pytest.raises(ValueError, match="max_length"):
        text.Tokenizer(reserved + ["a"], max_length=1)
    with pytest.raises(ValueError, match="texts"):
        tokenizer("one string, not a batch")
    with pytest.raises(ValueError, match="texts"):
        tokenizer([[b"nested"]])


def test_translation_batches_hold_every_pair_once_with_little_padding():
    sources, targets = toy_translation(700, seed=1)
    tokenizers = [
        text.Tokenizer(text.build_vocabulary(texts, size=300))
        for texts in (sources, targets)
    ]
    batches = text.translation_batches(
        sources, targets, *tokenizers, batch_size=32
    )
    seen, padding, total, count = [], 0, 0, 0
    for inputs, target_out in batches:
        source, target_in = inputs["source"].numpy(), inputs["target_in"]
        target_out = target_out.numpy()
        # Teacher forcing: target_out is target_in shifted left by one.
        np.testing.assert_array_equal(target_in.numpy()[:, 1:],
                                      target_out[:, :-1])  # fmt: skip
        assert (target_in.numpy()[:, 0] == text.START_ID).all()
        seen += [tuple(row[row > 0]) for row in source]
        padding += int((target_out == text.PAD_ID).sum())
        total += target_out.size
        count += 1
    expected = [tuple(row[row > 0]) for row in tokenizers[0](sources).numpy()]
    assert sorted(seen) == sorted(expected)
    assert count == int(batches.cardinality())
    assert padding / total < 0.15  # batched by length


def test_translation_batches_check_their_arguments(tokenizer):
    with pytest.raises(ValueError, match="`sources`"):
        text.translation_batches(["a"], [], tokenizer, tokenizer)
    with pytest.raises(ValueError, match="`batch_size`"):
        text.translation_batches(["a"], ["b"], tokenizer, tokenizer, 0)
