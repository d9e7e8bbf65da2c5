import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_attention.models import Transformer
from keras_attention.models import TransformerClassifier
from tests.testing import load_example

SOURCE = np.array([[5, 6, 7, 2, 0, 0], [8, 9, 2, 0, 0, 0]], "int32")
TARGET_IN = np.array([[1, 4, 5, 6], [1, 7, 8, 0]], "int32")


def small_transformer(**kwargs):
    keras.utils.set_random_seed(0)
    config = dict(
        num_layers=2,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        dropout=0.0,
    )
    return Transformer(20, 25, **{**config, **kwargs})


@pytest.fixture(scope="module")
def model():
    return small_transformer()


def inputs(source=SOURCE, target_in=TARGET_IN):
    return {"source": source, "target_in": target_in}


def test_logits_shape(model):
    assert tuple(model(inputs()).shape) == (2, 4, 25)


def test_source_padding_never_changes_logits(model):
    padded = np.pad(SOURCE, ((0, 0), (0, 5)))
    np.testing.assert_allclose(
        model(inputs(padded)), model(inputs()), atol=1e-5
    )


def test_save_and_load_give_identical_outputs(model, tmp_path):
    model.save(tmp_path / "t.keras")
    restored = keras.models.load_model(tmp_path / "t.keras")
    np.testing.assert_array_equal(restored(inputs()), model(inputs()))
    assert restored.get_config() == model.get_config()


def test_sub_models_share_weights_with_the_model(model):
    memory = np.asarray(model.encoder(SOURCE))
    out = model.decoder(
        {"target_in": TARGET_IN, "memory": memory, "memory_mask": SOURCE != 0}
    )
    np.testing.assert_allclose(out["logits"], model(inputs()), atol=1e-5)
    assert tuple(out["attention"].shape) == (2, 4, 6)


def test_cached_generation_equals_uncached(model):
    # The uncached reference (re-running the decoder over the prefix at
    # every step) lives with the benchmark that measures the cache.
    benchmark = load_example("decoding", folder="benchmarks")
    cached = model.generate(SOURCE, 8)
    uncached = benchmark.uncached_generate_function(model, SOURCE, 8)
    np.testing.assert_array_equal(cached, uncached)


def test_greedy_tokens_are_argmax_of_teacher_forcing(model):
    tokens = np.asarray(model.generate(SOURCE, 6))
    target_in = np.concatenate([np.ones((2, 1), "int32"), tokens[:, :-1]], 1)
    logits = np.array(model(inputs(target_in=target_in)))
    logits[..., :2] = -np.inf  # generation never emits pad or start
    expected = np.where(tokens > 0, logits.argmax(-1), 0)
    np.testing.assert_array_equal(tokens, expected)


def test_beam_width_one_and_top_k_one_equal_greedy(model):
    greedy = model.generate(SOURCE, 8)
    np.testing.assert_array_equal(
        model.generate(SOURCE, 8, method="beam", beam_width=1), greedy
    )
    np.testing.assert_array_equal(
        model.generate(SOURCE, 8, method="sample", top_k=1, seed=1), greedy
    )
    beams = model.generate(SOURCE, 8, method="beam", beam_width=3)
    assert tuple(beams.shape) == (2, 8)


def test_return_attention_is_a_distribution_over_real_source(model):
    tokens, attention = model.generate(SOURCE, 6, return_attention=True)
    attention = np.asarray(attention)
    assert attention.shape == (2, 6, 6)
    emitted = np.asarray(tokens) > 0
    np.testing.assert_allclose(attention.sum(-1)[emitted], 1.0, atol=1e-5)
    np.testing.assert_array_equal(attention[~emitted], 0.0)
    np.testing.assert_array_equal(
        attention[:, :, 4:][emitted[:, :, None].repeat(2, -1)], 0.0
    )


def test_fit_reduces_loss():
    model = small_transformer()
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    source = rng.integers(3, 20, size=(64, 6)).astype("int32")
    target = np.concatenate([source[:, ::-1], np.full((64, 1), 2)], 1)
    target_in = np.concatenate([np.ones((64, 1), "int32"), target[:, :-1]], 1)
    history = model.fit(
        inputs(source, target_in), target, epochs=8, batch_size=16, verbose=0
    )
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]


def test_shared_embeddings_and_errors():
    shared = Transformer(
        20,
        20,
        num_layers=1,
        hidden_dim=8,
        num_heads=2,
        intermediate_dim=8,
        share_embeddings=True,
    )
    assert shared.source_embedding is shared.target_embedding
    with pytest.raises(ValueError, match="equal vocabulary sizes"):
        Transformer(20, 21, share_embeddings=True)
    with pytest.raises(ValueError, match="divisible"):
        Transformer(20, 20, hidden_dim=10, num_heads=4)
    learned = Transformer(
        20,
        20,
        num_layers=1,
        hidden_dim=8,
        num_heads=2,
        intermediate_dim=8,
        max_length=6,
        positional="learned",
    )
    with pytest.raises(ValueError, match="max_length"):
        learned.generate(SOURCE, 10)


@pytest.mark.slow
@pytest.mark.tensorflow_only  # SavedModel export
def test_exported_saved_model_serves_in_a_fresh_process(model, tmp_path):
    path = str(tmp_path / "exported")
    model.export(path)
    expected = np.asarray(model(inputs()))
    np.save(tmp_path / "source.npy", SOURCE)
    np.save(tmp_path / "target_in.npy", TARGET_IN)
    script = textwrap.dedent(
        f"""
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        out = loaded.serve({{
            "source": tf.constant(np.load({str(tmp_path / "source.npy")!r})),
            "target_in": tf.constant(
                np.load({str(tmp_path / "target_in.npy")!r})),
        }})
        np.save({str(tmp_path / "out.npy")!r}, out.numpy())
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"), expected, atol=1e-5
    )


@pytest.mark.parametrize("pooling", ["cls", "mean", "attention"])
def test_classifier_fits_and_round_trips(pooling, tmp_path):
    keras.utils.set_random_seed(0)
    model = TransformerClassifier(
        20,
        3,
        num_layers=1,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=16,
        dropout=0.0,
        pooling=pooling,
    )
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, 20, size=(96, 7)).astype("int32")
    tokens[:48, 5:] = 0  # padding
    labels = (tokens[:, 0] % 3).astype("int32")
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(tokens, labels, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "c.keras")
    restored = keras.models.load_model(tmp_path / "c.keras")
    np.testing.assert_array_equal(restored(tokens), model(tokens))
    # Padding never changes the prediction.
    np.testing.assert_allclose(
        model(np.pad(tokens[:4], ((0, 0), (0, 3)))),
        model(tokens[:4]),
        atol=1e-5,
    )


def test_classifier_pooling_weights():
    model = TransformerClassifier(
        20,
        2,
        num_layers=1,
        hidden_dim=8,
        num_heads=2,
        intermediate_dim=8,
        pooling="attention",
    )
    weights = np.asarray(model.pooling_weights(SOURCE))
    assert weights.shape == (2, 6)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(weights[SOURCE == 0], 0.0)
    cls = TransformerClassifier(
        20, 2, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=8
    )
    with pytest.raises(ValueError, match="pooling='attention'"):
        cls.pooling_weights(SOURCE)
    with pytest.raises(ValueError, match="pooling"):
        TransformerClassifier(20, 2, pooling="max")


@pytest.mark.parametrize("positional", ["rotary", "alibi", "t5"])
def test_positional_schemes_decode_with_the_cache_and_round_trip(
    positional, tmp_path
):
    model = small_transformer(positional=positional, dropout=0.0)
    tokens = np.asarray(model.generate(SOURCE, 6))
    target_in = np.concatenate([np.ones((2, 1), "int32"), tokens[:, :-1]], 1)
    logits = np.array(model(inputs(target_in=target_in)))
    logits[..., :2] = -np.inf
    # The cache offsets rotary angles, ALiBi distances and T5 buckets.
    np.testing.assert_array_equal(
        tokens, np.where(tokens > 0, logits.argmax(-1), 0)
    )
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(restored(inputs()), model(inputs()))
    if positional == "t5":  # one bias per stack, shared by its blocks
        biases = [w for w in model.weights if "embeddings" in w.path
                  and "relative" in w.path]  # fmt: skip
        assert len(biases) == 2


@pytest.mark.parametrize("positional", ["rotary", "alibi", "t5"])
def test_classifier_positional_schemes(positional):
    model = TransformerClassifier(
        20, 3, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=8,
        positional=positional,
    )  # fmt: skip
    assert tuple(model(SOURCE).shape) == (2, 3)


@pytest.mark.parametrize(
    "build",
    [
        lambda **kw: small_transformer(**kw),
        lambda **kw: TransformerClassifier(
            20, 3, hidden_dim=8, num_heads=2, **kw
        ),  # fmt: skip
    ],
)
def test_misspelt_keyword_is_refused_naming_it(build):
    with pytest.raises(ValueError, match="dropuot"):
        build(dropuot=0.3)


def test_model_modifiers_reach_every_self_attention_and_round_trip(tmp_path):
    from keras_attention import mods

    model = small_transformer(
        score_mod=mods.SoftCap(0.5), mask_mod=mods.SlidingWindow(2)
    )
    plain = small_transformer()
    plain.set_weights(model.get_weights())
    self_attentions = [
        layer.self_attention
        for stack in (model.get_layer("encoder"), model.get_layer("decoder"))
        for layer in stack.blocks
    ]
    assert len(self_attentions) == 4
    for attention in self_attentions:
        assert isinstance(attention.score_mod, mods.SoftCap)
        assert isinstance(attention.mask_mod, mods.SlidingWindow)
    for block in model.get_layer("decoder").blocks:  # cross: none
        assert block.cross_attention.score_mod is None
    # A cap of 0.5 and a 2-wide window change the logits.
    assert not np.allclose(model(inputs()), plain(inputs()), atol=1e-3)
    # Cached generation honours them (== teacher forcing).
    tokens = np.asarray(model.generate(SOURCE, 5))
    target_in = np.concatenate([np.ones((2, 1), "int32"), tokens[:, :-1]], 1)
    logits = np.array(model(inputs(target_in=target_in)))
    logits[..., :2] = -np.inf
    np.testing.assert_array_equal(
        tokens, np.where(tokens > 0, logits.argmax(-1), 0)
    )
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(restored(inputs()), model(inputs()))
    assert restored.get_config()["score_mod"] == model.get_config()["score_mod"]


def test_model_score_mod_with_a_bias_scheme_is_refused():
    from keras_attention import mods

    with pytest.raises(ValueError, match="score_mod"):
        small_transformer(positional="alibi", score_mod=mods.SoftCap(5.0))
    with pytest.raises(ValueError, match="positional"):
        small_transformer(positional="sinusoidal2")


def test_generate_decodes_through_the_layers_initial_cache(monkeypatch):
    """The decoder stack's caches come from the layers' `initial_cache`
    (the decoding contract), never built by the model itself."""
    model = small_transformer()
    calls = []
    attention = model.get_layer("decoder").blocks[0].self_attention
    original = attention.initial_cache

    def spy(batch_size, max_length):
        calls.append(max_length)
        return original(batch_size, max_length)

    monkeypatch.setattr(attention, "initial_cache", spy)
    model.generate_function(SOURCE, 4)
    assert calls == [4]


KINDS = {
    "multi_head": {"use_sinks": True, "qk_norm": "rms"},
    "latent": {"kv_latent_dim": 8, "rotary_dim": 2},
    "differential": None,
    "linear": {"feature_map": "elu"},
    "linear-favor": {"feature_map": "favor", "num_random_features": 16},
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_attention_kind_generates_through_the_decoding_contract(
    name, tmp_path
):
    kind = name.split("-")[0]
    model = small_transformer(
        attention=kind, attention_options=KINDS[name], dropout=0.1
    )
    state = model.decoding_state(SOURCE, 6)
    caches = [tuple(c.shape) for c in state["cache"]]
    if kind == "latent":  # the latent cache, not keys and values
        assert caches == [(2, 6, 8 + 2)] * 2
    elif kind == "linear":  # a state of fixed size (B, H, F, Dv + 1 [+ 1])
        width = 8 + 1 + (name == "linear-favor")
        assert caches == [(2, 2, caches[0][2], width)] * 2
    else:
        assert all(len(shape) == 5 for shape in caches)
    tokens = np.asarray(model.generate(SOURCE, 6))
    target_in = np.concatenate([np.ones((2, 1), "int32"), tokens[:, :-1]], 1)
    logits = np.array(model(inputs(target_in=target_in)))
    logits[..., :2] = -np.inf
    np.testing.assert_array_equal(
        tokens, np.where(tokens > 0, logits.argmax(-1), 0)
    )
    # Beam search reorders the kind's cache; top-k 1 sampling walks it as
    # greedy does (tests/models/test_generation.py checks that for MHA).
    beam = np.asarray(model.generate(SOURCE, 6, method="beam", beam_width=1))
    np.testing.assert_array_equal(beam, tokens)
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert restored.get_config()["attention"] == kind
    np.testing.assert_array_equal(restored(inputs()), model(inputs()))


def test_linear_decoding_state_stays_float32_under_mixed_precision():
    # Keras' autocast would make the blocks' float32 sums float16.
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = small_transformer(attention="linear")
        state = model.decoding_state(SOURCE, 4)
        tokens = np.asarray(model.generate(SOURCE, 4))
        _, state, _ = model.decoding_step(tokens[:, 0], state, 0)
    finally:
        keras.config.set_dtype_policy(policy)
    dtypes = {keras.backend.standardize_dtype(c.dtype) for c in state["cache"]}
    assert dtypes == {"float32"}
    target_in = np.concatenate([np.ones((2, 1), "int32"), tokens[:, :-1]], 1)
    logits = np.array(model(inputs(target_in=target_in)), "float32")
    logits[..., :2] = -np.inf
    np.testing.assert_array_equal(
        tokens, np.where(tokens > 0, logits.argmax(-1), 0)
    )


def test_differential_blocks_take_their_depth_as_layer_index(tmp_path):
    from keras_attention.layers import TransformerEncoder

    stack = TransformerEncoder(
        3, num_heads=2, intermediate_dim=8, attention="differential"
    )
    stack(np.ones((1, 4, 8), "float32"))
    indices = [block.self_attention.layer_index for block in stack.blocks]
    assert indices == [1, 2, 3]
    clone = TransformerEncoder.from_config(stack.get_config())
    clone(np.ones((1, 4, 8), "float32"))
    assert [b.self_attention.layer_index for b in clone.blocks] == indices


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"attention": "flash"}, "attention"),
        ({"attention_options": [("use_sinks", True)]}, "attention_options"),
        ({"attention_options": {"use_sinkz": True}}, "use_sinkz"),
        ({"attention": "latent", "attention_options": {"rotary_dim": 3}},
         "rotary_dim"),
    ],
)  # fmt: skip
def test_bad_attention_choices_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        small_transformer(**kwargs)
