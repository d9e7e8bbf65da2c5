"""Per-backend test setup.

The suite runs on `KERAS_BACKEND=tensorflow` (default), `jax` and `torch`.
Tests of TensorFlow-only modules (`text`, `export`, `training`,
`tf.distribute`, SavedModel export) carry the `tensorflow_only` marker and
are skipped, with that reason printed, on the other backends; so are the
example scripts' quick runs (backend-neutral code, checked on TensorFlow).
"""

import keras
import pytest

BACKEND = keras.config.backend()

if BACKEND == "torch":
    import torch

    # Tests read outputs with `np.asarray`; a PyTorch tensor that requires
    # grad refuses that (`.detach()` first). Test-only convenience.
    _array = torch.Tensor.__array__

    def _detached_array(self, *args, **kwargs):
        return _array(self.detach().cpu(), *args, **kwargs)

    torch.Tensor.__array__ = _detached_array


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "tensorflow_only: needs the TensorFlow backend (TF-only module, "
        "tf.distribute or SavedModel export); skipped on the others",
    )


def pytest_collection_modifyitems(config, items):
    if BACKEND == "tensorflow":
        return
    tensorflow_only = pytest.mark.skip(
        reason=f"TensorFlow-only feature; KERAS_BACKEND={BACKEND}"
    )
    example = pytest.mark.skip(
        reason="examples run in the TensorFlow job: the same keras.ops code, "
        "with quick-run accuracy bounds set for TensorFlow's initial weights"
    )
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(tensorflow_only)
        elif "/tests/examples/" in str(item.path):
            item.add_marker(example)
