"""Weights saved on one backend give the same outputs on the others.

A `Transformer`, a `Seq2Seq`, a chunked `MultiHeadAttention`, a layer of
each kind of the attention family and a `Transformer` of each kind (latent,
differential, linear: each decodes through its own cache) save their
weights under TensorFlow; JAX and PyTorch load them in fresh processes and
must give the same logits (1e-5) and the same tokens: greedy search for
every model, beam search for the Transformer and Seq2Seq, and seeded
sampling for the Transformer (the sampling noise is the same bits on every
backend).
"""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "scripts", "backend_worker.py")
OTHERS = ["jax", "torch"]

pytestmark = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="the cross-backend test drives every backend from the "
    "TensorFlow job",
)


def run(backend, folder):
    result = subprocess.run(
        [sys.executable, WORKER, str(folder)],
        env={**os.environ, "KERAS_BACKEND": backend},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(os.path.join(folder, f"{backend}.npz"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cross_backend")
    return folder, run("tensorflow", folder)


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHERS)
def test_same_weights_same_outputs_and_tokens(reference, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (make test-{backend})")
    folder, expected = reference
    actual = run(backend, folder)
    for key in expected.files:
        if key.endswith(("logits", "attention")):
            np.testing.assert_allclose(
                actual[key], expected[key], atol=1e-5, err_msg=key
            )
        else:
            np.testing.assert_array_equal(
                actual[key], expected[key], err_msg=key
            )
