import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_attention import text
from keras_attention.datasets import toy_translation
from keras_attention.export import Translator
from keras_attention.export import export_translator
from keras_attention.models import Seq2Seq
from keras_attention.models import Transformer

pytestmark = (
    pytest.mark.tensorflow_only
)  # the `export` module is TensorFlow-only (SavedModel)

ENGLISH, SPANISH = toy_translation(300, seed=0)
INPUTS = [
    ENGLISH[0],
    "",
    "the cat " * 100,  # far beyond the source length: truncated
    b"\xff\xfe not utf-8 \xc3",
    "Ünïcödé ¿qué? 🐈",
    "\u00a0\u3000\u2009 \t\n",  # only (Unicode) whitespace
]
BLANK = (1, 5)  # the inputs with nothing to translate


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    source = text.Tokenizer(text.build_vocabulary(ENGLISH, 120))
    target = text.Tokenizer(text.build_vocabulary(SPANISH, 120))
    model = Transformer(
        source.vocabulary_size,
        target.vocabulary_size,
        num_layers=1,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=16,
        max_length=16,
    )
    path = str(tmp_path_factory.mktemp("export") / "translator")
    translator = export_translator(
        model,
        source,
        target,
        path,
        max_length=12,
        method="beam",
        beam_width=3,
    )
    return path, translator


def test_in_process_translator_handles_bad_input(exported):
    _, translator = exported
    outputs = translator.translate(tf.constant(INPUTS))
    out = outputs["translation"]
    assert out.shape == (len(INPUTS),) and out.dtype == tf.string
    assert [out.numpy()[i] for i in BLANK] == [b""] * len(BLANK)
    # Only the 200-word input was cut to the source length, and says so.
    truncated = outputs["truncated"].numpy()
    assert list(truncated) == [i == 2 for i in range(len(INPUTS))]


def test_lengths_default_to_the_models_positions(exported):
    _, translator = exported
    source, target = translator.source_tokenizer, translator.target_tokenizer
    defaults = Translator(translator.model, source, target)
    assert (defaults.max_length, defaults.source_length) == (16, 16)
    rnn = Seq2Seq(
        source.vocabulary_size, target.vocabulary_size, embedding_dim=4,
        units=4,
    )  # fmt: skip
    rnn_defaults = Translator(rnn, source, target, max_length=20)
    assert (rnn_defaults.max_length, rnn_defaults.source_length) == (20, 20)
    assert Translator(rnn, source, target).max_length == 64
    assert Translator(rnn, source, target, max_length=1).max_length == 1
    with pytest.raises(ValueError, match="`source_length`"):
        Translator(rnn, source, target, source_length=1)


def small_transformer(source, target, positional):
    return Transformer(
        source.vocabulary_size, target.vocabulary_size, num_layers=1,
        hidden_dim=8, num_heads=2, intermediate_dim=8, max_length=16,
        positional=positional,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["max_length", "source_length"])
def test_lengths_beyond_the_positions_fail_before_tracing(
    exported, name, tmp_path
):
    _, translator = exported
    source, target = translator.source_tokenizer, translator.target_tokenizer
    learned = small_transformer(source, target, "learned")
    unused = str(tmp_path / "unused")  # under tmp_path even if it raises
    with pytest.raises(ValueError, match=f"`{name}`") as error:
        export_translator(learned, source, target, unused, **{name: 17})
    assert "\n" not in str(error.value)  # one line, no traced-code dump
    assert not os.path.exists(unused)  # raised before writing anything


@pytest.mark.parametrize(
    "positional, max_length, source_length, accepted",
    [
        ("learned", 17, 16, False),
        ("sinusoidal", 17, 16, True),  # computed positions: any target
        ("sinusoidal", 16, 17, False),  # the source embedding has 16
        ("rotary", 40, 40, True),
        ("alibi", 40, 40, True),
    ],
)
def test_translator_accepts_the_lengths_generate_accepts(
    exported, positional, max_length, source_length, accepted
):
    _, translator = exported
    source, target = translator.source_tokenizer, translator.target_tokenizer
    model = small_transformer(source, target, positional)
    ids = np.ones((1, source_length), "int32")

    attempts = (
        lambda: model.generate(ids, max_length),
        lambda: Translator(model, source, target, max_length, source_length),
    )
    for attempt in attempts:
        if accepted:
            attempt()
        else:
            with pytest.raises(ValueError, match="length"):
                attempt()


def test_vocabulary_sizes_are_checked_before_export(exported, tmp_path):
    _, translator = exported
    source, target = translator.source_tokenizer, translator.target_tokenizer
    unused = str(tmp_path / "unused")  # under tmp_path even if it raises
    too_big = Transformer(
        source.vocabulary_size, target.vocabulary_size + 5, num_layers=1,
        hidden_dim=8, num_heads=2, intermediate_dim=8,
    )  # fmt: skip
    with pytest.raises(ValueError, match="target_vocab_size"):
        export_translator(too_big, source, target, unused)
    too_small = Transformer(
        source.vocabulary_size - 5, target.vocabulary_size, num_layers=1,
        hidden_dim=8, num_heads=2, intermediate_dim=8,
    )  # fmt: skip
    with pytest.raises(ValueError, match="source_tokenizer"):
        export_translator(too_small, source, target, unused)
    with pytest.raises(TypeError, match="target_tokenizer"):
        export_translator(translator.model, source, "nope", unused)
    with pytest.raises(ValueError, match="max_length"):
        export_translator(
            translator.model, source, target, unused, max_length=0
        )
    assert not os.path.exists(unused)  # every call raised before writing


@pytest.mark.slow
def test_fresh_process_loads_with_only_tensorflow_text(exported, tmp_path):
    path, translator = exported
    expected = translator.translate(tf.constant(INPUTS))["translation"]
    np.save(tmp_path / "inputs.npy", np.array(INPUTS, dtype=object))
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import tensorflow as tf
        import tensorflow_text  # noqa: F401
        loaded = tf.saved_model.load({path!r})
        inputs = tf.constant(list(np.load({str(tmp_path / "inputs.npy")!r},
                                          allow_pickle=True)))
        a = loaded.translate(inputs)["translation"].numpy()
        b = loaded.signatures["serving_default"](inputs)["translation"]
        assert (a == b.numpy()).all()
        assert not any(m.startswith("keras_attention") for m in sys.modules)
        np.save({str(tmp_path / "out.npy")!r}, a)
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(
        [sys.executable, "-c", script], check=True, env=env, cwd=tmp_path
    )
    got = np.load(tmp_path / "out.npy", allow_pickle=True)
    assert list(got) == list(expected.numpy())
    assert [got[i] for i in BLANK] == [b""] * len(BLANK)  # empty in, out


@pytest.mark.slow
def test_saved_model_cli_describes_the_signature(exported):
    path, _ = exported
    cli = shutil.which("saved_model_cli") or os.path.join(
        os.path.dirname(sys.executable), "saved_model_cli"
    )
    result = subprocess.run(
        [cli, "show", "--all", "--dir", path],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "serving_default" in result.stdout
    assert "translation" in result.stdout and "DT_STRING" in result.stdout


def test_bad_arguments_raise(exported, tmp_path):
    _, translator = exported
    unused = str(tmp_path / "unused")  # under tmp_path even if it raises
    with pytest.raises(ValueError, match="method"):
        export_translator(
            translator.model,
            translator.source_tokenizer,
            translator.target_tokenizer,
            unused,
            method="sample",
        )
    assert not os.path.exists(unused)


@pytest.mark.parametrize(
    "options",
    [{"method": "beam", "beam_width": 3}],  # greedy: beam's steps
)
def test_exported_controls_equal_generate_with_them(
    exported, options, tmp_path
):
    # HF's logit controls pass through `export_translator` into the graph.
    _, translator = exported
    model = translator.model
    source, target = translator.source_tokenizer, translator.target_tokenizer
    texts = tf.constant(ENGLISH[:6])
    ids = source.pad(source.tokenize(texts), translator.source_length)
    free = np.asarray(model.generate(ids, 12, **options))
    counts = np.bincount(free.ravel(), minlength=target.vocabulary_size)
    counts[:4] = 0  # reserved ids stay allowed
    controls = {
        "min_length": 4,
        "no_repeat_ngram_size": 2,
        "repetition_penalty": 1.4,
        "bad_token_ids": [int(np.argmax(counts))],  # the most frequent
    }
    tokens = model.generate(ids, 12, **options, **controls)
    assert not np.array_equal(np.asarray(tokens), free)
    path = str(tmp_path / "translator")
    export_translator(
        model, source, target, path, max_length=12, **options, **controls
    )
    loaded = tf.saved_model.load(path)  # kept: its variables live on it
    translation = loaded.translate(texts)["translation"].numpy()
    assert list(translation) == list(target.detokenize(tokens).numpy())


@pytest.mark.parametrize(
    "controls, name",
    [
        ({"min_length": -1}, "min_length"),
        ({"no_repeat_ngram_size": 1.5}, "no_repeat_ngram_size"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"bad_token_ids": [10**6]}, "bad_token_ids"),  # beyond V
    ],
)
def test_bad_controls_fail_before_export(exported, controls, name, tmp_path):
    _, translator = exported
    unused = str(tmp_path / "unused")
    with pytest.raises(ValueError, match=f"argument `{name}`"):
        export_translator(
            translator.model,
            translator.source_tokenizer,
            translator.target_tokenizer,
            unused,
            **controls,
        )
    assert not os.path.exists(unused)
