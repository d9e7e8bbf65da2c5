"""Training under `keras.distribution` on JAX equals one device.

The JAX session has eight virtual CPU devices (see `conftest.py`): a
`(2, 4)` mesh of `batch` × `model` for `ModelParallel` with the models'
`get_layout_map`, and all eight for `DataParallel`.
"""

import keras
import numpy as np
import pytest

from keras_attention.models import Seq2Seq
from keras_attention.models import Transformer
from keras_attention.models import TransformerClassifier

pytestmark = pytest.mark.skipif(
    keras.config.backend() != "jax"
    or len(keras.distribution.list_devices()) < 8,
    reason="keras.distribution runs on JAX; the JAX suite has 8 CPU devices",
)

rng = np.random.default_rng(0)
SOURCE = rng.integers(3, 20, size=(8, 6)).astype("int32")
TARGET_IN = rng.integers(1, 20, size=(8, 5)).astype("int32")
TARGET_OUT = rng.integers(2, 20, size=(8, 5)).astype("int32")
LABELS = rng.integers(0, 3, size=(8,)).astype("int32")
SMALL = dict(num_layers=1, hidden_dim=16, num_heads=4, intermediate_dim=32,
             dropout=0.0)  # fmt: skip

MODELS = {
    "transformer": (
        lambda **kw: Transformer(20, 20, **SMALL, **kw),
        {"source": SOURCE, "target_in": TARGET_IN},
        TARGET_OUT,
    ),
    "latent_transformer": (
        lambda **kw: Transformer(
            20,
            20,
            **SMALL,
            attention="latent",
            attention_options={"kv_latent_dim": 8},
            **kw,
        ),  # fmt: skip
        {"source": SOURCE, "target_in": TARGET_IN},
        TARGET_OUT,
    ),
    "classifier": (
        lambda **kw: TransformerClassifier(20, 3, **SMALL, **kw),
        SOURCE,
        LABELS,
    ),
    "seq2seq": (
        lambda **kw: Seq2Seq(20, 20, embedding_dim=8, units=8, **kw),
        {"source": SOURCE, "target_in": TARGET_IN},
        TARGET_OUT,
    ),
}


def mesh():
    return keras.distribution.DeviceMesh(
        (2, 4), ("batch", "model"), keras.distribution.list_devices()
    )


def model_parallel(cls):
    layout_map = cls.get_layout_map(mesh())
    return keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    )


def train(name, distribution=None, weights=None):
    """Two SGD steps; the losses and the final weights."""
    build, x, y = MODELS[name]
    scope = distribution.scope() if distribution else _no_scope()
    with scope:
        model = build()
        if weights is not None:
            model.set_weights(weights)
        model.compile(
            keras.optimizers.SGD(0.1),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model, history.history["loss"]


class _no_scope:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def single_device(name):
    keras.utils.set_random_seed(0)
    build = MODELS[name][0]
    weights = build().get_weights()
    return weights, train(name, weights=weights)


# The latent Transformer's layout holds the plain one's (and its latent
# projections); the plain Transformer's shards are checked below.
@pytest.mark.parametrize("name", ["latent_transformer", "classifier"])
def test_model_parallel_fit_equals_one_device(name):
    weights, (one, one_losses) = single_device(name)
    cls = type(one)
    sharded, losses = train(name, model_parallel(cls), weights)
    np.testing.assert_allclose(losses, one_losses, rtol=1e-5)
    for a, b in zip(sharded.get_weights(), one.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_model_parallel_really_shards_heads_feed_forward_and_embeddings():
    with model_parallel(Transformer).scope():
        model = MODELS["transformer"][0]()
    specs = {w.path: tuple(w.value.sharding.spec) for w in model.weights}
    block = "encoder/block_0/"
    assert specs[block + "self_attention/query/kernel"] == (None, "model", None)
    assert specs[block + "self_attention/query/bias"] == ("model", None)
    assert specs[block + "self_attention/attention_output/kernel"][0] == (
        "model"
    )
    assert specs[block + "feed_forward/intermediate/kernel"] == (None, "model")
    assert specs[block + "feed_forward/output/kernel"][0] == "model"
    assert specs["source_embedding/token_embedding/embeddings"] == (
        None,
        "model",
    )
    # The logits layer stays replicated (its vocabulary need not divide 4).
    assert set(specs["logits/kernel"]) <= {None}
    query = model.get_layer("encoder").blocks[0].self_attention.query_dense
    shards = query.kernel.value.addressable_shards
    assert {tuple(s.data.shape) for s in shards} == {(16, 1, 4)}


@pytest.mark.parametrize("name", ["seq2seq"])  # MP shards batch for the rest
def test_data_parallel_fit_equals_one_device(name):
    weights, (one, one_losses) = single_device(name)
    distribution = keras.distribution.DataParallel(
        devices=keras.distribution.list_devices()
    )
    parallel, losses = train(name, distribution, weights)
    np.testing.assert_allclose(losses, one_losses, rtol=1e-5)
    for a, b in zip(parallel.get_weights(), one.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_save_and_load_under_a_distribution(tmp_path):
    distribution = model_parallel(Transformer)
    x = MODELS["transformer"][1]
    with distribution.scope():
        model = MODELS["transformer"][0]()
        expected = np.asarray(model(x))
        model.save(tmp_path / "sharded.keras")
        restored = keras.models.load_model(tmp_path / "sharded.keras")
        np.testing.assert_allclose(restored(x), expected, atol=1e-6)
    plain = keras.models.load_model(tmp_path / "sharded.keras")
    np.testing.assert_allclose(plain(x), expected, atol=1e-5)


def test_layout_map_arguments_are_checked():
    with pytest.raises(ValueError, match="device_mesh"):
        Transformer.get_layout_map("mesh")
    with pytest.raises(ValueError, match="model_parallel_dim_name"):
        Transformer.get_layout_map(mesh(), model_parallel_dim_name="tensor")
    with pytest.raises(ValueError, match="data_parallel_dim_name"):
        TransformerClassifier.get_layout_map(
            mesh(), data_parallel_dim_name="data"
        )
