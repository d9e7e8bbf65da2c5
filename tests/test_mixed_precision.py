import keras
import numpy as np
import pytest

from tests.scripts.small_model import DATA
from tests.scripts.small_model import MODELS


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
