"""The sharded-training example's quick run: 8 devices equal one device."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.slow
def test_sharded_training_quick_run_with_ring_attention_equals_one_device(
    tmp_path,
):
    pytest.importorskip("jax")  # the example runs keras.distribution on JAX
    # A subprocess: the example makes 8 virtual devices and picks JAX,
    # which must happen before JAX and Keras start.
    environment = {**os.environ, "CI": "true"}
    environment.pop("XLA_FLAGS", None)
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "sharded_training.py"),
            "--quick",
            "--sequence-parallel",
            "--out",
            str(tmp_path),
        ],
        check=True,
        timeout=900,
        env=environment,
    )
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert summary["mesh"] == {"batch": 2, "sequence": 4}
    assert summary["sequence_parallel"] is True
    # Heads shard over the axis the sequence splits over (ring attention).
    assert summary["query_kernel_sharding"][1] == "sequence"
    # What the example reports: the same training as on one device.
    assert summary["equal"] is True
    np.testing.assert_allclose(
        summary["sharded_loss"], summary["one_device_loss"], rtol=1e-4
    )
    assert summary["max_weight_difference"] < 1e-3
    assert summary["sharded_loss"][-1] < summary["sharded_loss"][0]
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert (tmp_path / "sharded_transformer.keras").stat().st_size > 0
