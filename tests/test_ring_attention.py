"""Ring attention (`sequence_parallel`) equals ordinary attention.

On JAX the session has eight virtual CPU devices (see `conftest.py`): a
`(2, 4)` mesh of `batch` × `sequence` and an `(8,)` mesh of `sequence`.
Each case compares a layer with `sequence_parallel="sequence"` under a
distribution (the ring) with the same layer without one (ordinary
attention): outputs and gradients of the inputs and every weight, in one
compiled function whose program must hold the ring's collective-permute.
Without a distribution, and on every backend, the layer is ordinary
attention.
"""

from unittest import mock

import keras
import numpy as np
import pytest

from keras_attention import mods
from keras_attention import parallel
from keras_attention.layers import DifferentialAttention
from keras_attention.layers import LinearAttention
from keras_attention.layers import MultiHeadAttention
from keras_attention.models import Transformer

on_jax = pytest.mark.skipif(
    keras.config.backend() != "jax"
    or len(keras.distribution.list_devices()) < 8,
    reason="ring attention runs on JAX; the JAX suite has 8 CPU devices",
)

rng = np.random.default_rng(0)
T = 16


def normal(*shape):
    return rng.normal(size=shape).astype("float32")


def distribution(shape=(2, 4), names=("batch", "sequence")):
    """`ModelParallel` (no sharded weights) over a mesh with `sequence`."""
    mesh = keras.distribution.DeviceMesh(
        shape, names, keras.distribution.list_devices()
    )
    return keras.distribution.ModelParallel(
        layout_map=keras.distribution.LayoutMap(mesh),
        batch_dim_name=names[0],
    )


def jitted(function, *args):
    """`function(*args)` compiled, traced anew: `jax.jit` caches a trace
    per function, and the distribution is no argument of it. (Compiled,
    since an eager call under a distribution compiles its ring anyway.)"""
    import jax

    return jax.jit(lambda *args: function(*args))(*args)


def padding(batch, length, lengths):
    mask = np.zeros((batch, length), bool)
    for row, n in enumerate(lengths):
        mask[row, :n] = True
    return mask


CASES = {
    # causal, GQA, rotary, ALiBi at absolute positions, padded keys
    "causal_gqa_rotary_alibi_padding": (
        dict(num_key_value_heads=2, rotary_max_wavelength=100,
             score_mod=mods.ALiBi()),
        dict(use_causal_mask=True, key_mask=padding(2, T, (16, 11))),
        T, (2, 4), 2,  # chunks per device: zigzag
    ),
    # bidirectional, T5's learned bias (its gradient too), padded queries
    "bidirectional_t5_bias_padding": (
        dict(score_mod=mods.RelativePositionBias(num_buckets=8,
                                                 max_distance=16)),
        dict(key_mask=padding(2, T, (13, 16)),
             query_mask=padding(2, T, (13, 16))),
        T, (8,), 1,
    ),
    # 13 positions on 8 devices (padded, masks and bias too), a window,
    # sinks, multi-query, a score with weights, packed documents
    "uneven_window_sinks_score_mask_bias_documents": (
        dict(use_sinks=True, num_key_value_heads=1, sliding_window=5,
             score="general", mask_mod=mods.DocumentMask()),
        dict(use_causal_mask=True,
             attention_mask=rng.random((2, 13, 13)) > 0.2,
             attention_bias=normal(2, 4, 13, 13),
             segment_ids=np.array([[0] * 5 + [1] * 8, [0] * 9 + [1] * 4])),
        13, (8,), 2,
    ),
}  # fmt: skip


def value_and_gradients(layer, x, call_kwargs):
    """A compiled `(loss, (d weights, d x))` of the layer's self-attention."""
    import jax

    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss(trainable, x):
        y, _ = layer.stateless_call(trainable, non_trainable, x, x,
                                    **call_kwargs)  # fmt: skip
        return jax.numpy.sum(y * jax.numpy.cos(y))  # a loss that mixes rows

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


@on_jax
@pytest.mark.parametrize("case", sorted(CASES))
def test_ring_equals_ordinary_attention_outputs_and_gradients(
    case, monkeypatch
):
    import jax

    kwargs, call_kwargs, length, shape, chunks = CASES[case]
    layouts = []
    ring = parallel._ring
    monkeypatch.setattr(
        parallel, "_ring", lambda a, r: layouts.append(r.chunks) or ring(a, r)
    )
    names = ("batch", "sequence")[-len(shape) :]
    x = normal(2, length, 8)
    layer = MultiHeadAttention(4, 4, sequence_parallel="sequence", **kwargs)
    layer(x, x, **call_kwargs)  # build
    trainable = [v.value for v in layer.trainable_variables]
    expected = value_and_gradients(layer, x, call_kwargs)(trainable, x)
    with distribution(shape, names).scope():
        lowered = value_and_gradients(layer, x, call_kwargs).lower(trainable, x)
    program = lowered.as_text()
    result = lowered.compile()(trainable, x)
    assert "collective_permute" in program  # the key/value blocks' ring
    assert set(layouts) == {chunks}
    for got, want in zip(jax.tree.leaves(result), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


@on_jax
def test_ring_runs_under_the_distribution_only_self_and_cross():
    x = normal(4, T, 8)
    layer = MultiHeadAttention(2, 4, sequence_parallel="sequence")
    layer(x, x)  # build (no weights made inside a trace)

    memory = normal(4, 20, 8)  # cross-attention: 12 queries, 20 keys

    def self_and_cross(x, memory):
        return (
            layer(x, x, use_causal_mask=True),
            layer(x[:, :12], memory, key_mask=padding(4, 20, (20, 9, 15, 1))),
        )

    with mock.patch.object(
        parallel, "ring_attention", wraps=parallel.ring_attention
    ) as ring:
        expected = jitted(self_and_cross, x, memory)
        assert ring.call_count == 0
        with distribution().scope():
            output = jitted(self_and_cross, x, memory)
        assert ring.call_count == 2
    for a, b in zip(output, expected):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_causal_ring_skips_the_blocks_above_the_diagonal():
    ring = parallel._Ring("sequence", 8, None, True, None, None, None, (4,))
    visible = parallel._visible_blocks(ring, 2, 2)  # one chunk per device
    expected = [[key <= query for key in range(8)] for query in range(8)]
    np.testing.assert_array_equal(visible[..., 0, 0], expected)  # 36 of 64
    window = ring._replace(use_causal_mask=False, sliding_window=3)
    visible = parallel._visible_blocks(window, 2, 2)
    expected = [[abs(k - q) <= 1 for k in range(8)] for q in range(8)]
    np.testing.assert_array_equal(visible[..., 0, 0], expected)
    everything = ring._replace(use_causal_mask=False)
    assert parallel._visible_blocks(everything, 2, 2) is None


def test_causal_ring_balances_the_devices_in_zigzag():
    # Device r holds chunks r and 2N - 1 - r of 2N: every device attends
    # 2N + 1 of its 4N chunk pairs, where the contiguous layout's last
    # device attends all N of its blocks (Brandon et al. 2023).
    ring = parallel._Ring("sequence", 8, None, True, None, None, None, (4,))
    assert parallel._layout(ring, 32, 32) == 2
    zigzag = ring._replace(chunks=2)
    visible = parallel._visible_blocks(zigzag, 2, 2)
    assert visible.sum(axis=(1, 2, 3)).tolist() == [17] * 8
    for r, s, p, q in np.ndindex(visible.shape):
        query = parallel._chunk(r, p, 8)
        assert visible[r, s, p, q] == (parallel._chunk(s, q, 8) <= query)
    contiguous = parallel.busiest_device_work(ring, 32, 32)
    assert contiguous == 8 * 4 * 4  # device 7: 8 blocks of 4 x 4
    assert parallel.busiest_device_work(zigzag, 32, 32) == 17 * 2 * 2
    # Nothing to skip without a mask: one contiguous chunk per device.
    assert parallel._layout(ring._replace(use_causal_mask=False), 32, 32) == 1
    # The permutation puts each device's chunks side by side.
    positions = parallel._positions(zigzag, 32)
    assert positions[:4].tolist() == [0, 1, 30, 31]
    assert sorted(positions.tolist()) == list(range(32))


@on_jax
def test_ring_needs_a_mesh_with_the_axis():
    x = normal(2, T, 8)
    layer = MultiHeadAttention(2, 4, sequence_parallel="sequence")
    layer(x, x)
    # A mesh without a `sequence` axis: ordinary attention.
    with distribution((2, 4), ("batch", "model")).scope():
        with mock.patch.object(parallel, "ring_attention") as ring:
            jitted(lambda x: layer(x, x), x)
    ring.assert_not_called()


@on_jax
def test_scores_and_decoding_as_ordinary_attention_dropout_an_error():
    x = normal(2, T, 8)
    layer = MultiHeadAttention(2, 4, dropout=0.5, sequence_parallel="sequence")
    layer(x, x)
    cache = layer.initial_cache(2, T)

    def scores_and_step(x, cache):
        output, weights = layer(x, x, return_attention_scores=True)
        step = layer(x[:, :3], x[:, :3], cache=cache, cache_update_index=0,
                     use_causal_mask=True)  # fmt: skip
        return output, weights, step

    expected = jitted(scores_and_step, x, cache)
    with distribution().scope():
        with mock.patch.object(
            parallel, "ring_attention", wraps=parallel.ring_attention
        ) as ring:
            got = jitted(scores_and_step, x, cache)
        # The output: the weights are (T, T), a decoding step ordinary.
        assert ring.call_count == 1
        with pytest.raises(ValueError, match="dropout"):
            jitted(lambda x: layer(x, x, training=True), x)
    import jax

    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@on_jax
def test_differential_attention_runs_both_maps_on_the_ring():
    x = normal(2, T, 8)
    layer = DifferentialAttention(2, 4, sequence_parallel="sequence", seed=1)
    layer(x, x)

    def causal(x):
        return layer(x, x, use_causal_mask=True)

    expected = jitted(causal, x)
    with distribution((8,), ("sequence",)).scope():
        with mock.patch.object(
            parallel, "ring_attention", wraps=parallel.ring_attention
        ) as ring:
            output = jitted(causal, x)
    assert ring.call_count == 2
    np.testing.assert_allclose(output, expected, atol=1e-5)


@on_jax
def test_transformer_passes_sequence_parallel_to_self_attention():
    model = Transformer(
        20, 20, num_layers=1, hidden_dim=16, num_heads=4, intermediate_dim=32,
        dropout=0.0, attention_options={"sequence_parallel": "sequence"},
    )  # fmt: skip
    inputs = {
        "source": rng.integers(1, 20, size=(2, T)).astype("int32"),
        "target_in": rng.integers(1, 20, size=(2, T)).astype("int32"),
    }
    inputs["source"][1, 10:] = 0  # padding
    layers = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, MultiHeadAttention)
    ]
    spread = {layer.sequence_parallel for layer in layers}
    assert spread == {"sequence", None}  # self-attention; cross stays plain
    expected = jitted(model, inputs)
    with distribution().scope():
        with mock.patch.object(
            parallel, "ring_attention", wraps=parallel.ring_attention
        ) as ring:
            output = jitted(model, inputs)
    assert ring.call_count == 2  # the encoder's and the decoder's
    np.testing.assert_allclose(output, expected, atol=1e-5)


def test_without_a_distribution_it_is_plain_multi_head_attention():
    x = normal(2, 6, 8)
    ours = MultiHeadAttention(2, 4, sequence_parallel="sequence")
    plain = MultiHeadAttention(2, 4)
    expected = plain(x, x, use_causal_mask=True)
    ours(x, x)
    ours.set_weights(plain.get_weights())
    np.testing.assert_allclose(
        ours(x, x, use_causal_mask=True), expected, atol=1e-6
    )


def test_config_round_trip(tmp_path):
    layer = MultiHeadAttention(2, 4, sequence_parallel="sequence")
    config = layer.get_config()
    assert config["sequence_parallel"] == "sequence"
    clone = MultiHeadAttention.from_config(config)
    assert clone.get_config() == config
    inputs = keras.Input((6, 8))
    model = keras.Model(inputs, layer(inputs, inputs))
    path = str(tmp_path / "ring.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    x = normal(2, 6, 8)
    np.testing.assert_allclose(restored(x), model(x), atol=1e-6)


@pytest.mark.parametrize("value", [3, "", ["sequence"]])
def test_bad_sequence_parallel_is_a_value_error_naming_it(value):
    with pytest.raises(ValueError, match="sequence_parallel"):
        MultiHeadAttention(2, 4, sequence_parallel=value)


def test_linear_attention_takes_no_sequence_parallel():
    with pytest.raises(ValueError, match="sequence_parallel"):
        LinearAttention(2, 4, sequence_parallel="sequence")
