import keras
import numpy as np
import pytest

import keras_attention as ka
from tests.scripts.small_model import DATA
from tests.scripts.small_model import MODELS
from tests.testing import as_float32


@pytest.fixture
def policy(request):
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize(
    "policy", ["mixed_float16", "mixed_bfloat16"], indirect=True
)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_with_finite_loss(name, policy):
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    compute = {layer.compute_dtype for layer in model.layers}
    assert policy.split("_")[1] in compute  # really runs in half precision
    x, y = DATA[name]()
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    logits = np.asarray(
        model.predict(
            x[:4]
            if name in ("custom", "classifier")
            else {k: v[:4] for k, v in x.items()},
            verbose=0,
        ),
        "float32",
    )
    assert np.isfinite(logits).all()


FAMILY = {
    "sinks_qk_norm": lambda: ka.MultiHeadAttention(
        2, 8, use_sinks=True, qk_norm="rms", chunk_size=4
    ),
    "latent": lambda: ka.MultiHeadLatentAttention(
        2, 8, kv_latent_dim=8, rotary_dim=4
    ),
    "differential": lambda: ka.DifferentialAttention(2, 4, chunk_size=4),
    "linear_favor": lambda: ka.LinearAttention(2, 8, feature_map="favor"),
}


@pytest.mark.parametrize(
    "policy", ["mixed_float16", "mixed_bfloat16"], indirect=True
)
@pytest.mark.parametrize("name", sorted(FAMILY))
def test_attention_family_is_finite_in_half_precision(name, policy):
    """Inputs of magnitude ~100 (logits far past float16's range before
    the float32 softmax); full pass and cached decoding stay finite."""
    keras.utils.set_random_seed(0)
    layer = FAMILY[name]()
    x = 100 * np.random.default_rng(0).normal(size=(2, 6, 16)).astype("f4")
    full = layer(x, x, use_causal_mask=True)
    assert layer.compute_dtype == policy.split("_")[1]
    assert np.isfinite(as_float32(full)).all()
    cache = layer.initial_cache(2, 6)
    for i in range(6):
        step, cache = layer(
            x[:, i : i + 1], x[:, i : i + 1], use_causal_mask=True,
            cache=cache, cache_update_index=i,
        )  # fmt: skip
        assert np.isfinite(as_float32(step)).all()
