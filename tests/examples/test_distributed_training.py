import json
import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow_only  # tf.distribute

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.slow
def test_distributed_training_quick_run_both_paths_agree(tmp_path):
    # A subprocess: the example splits the CPU into logical devices, which
    # must happen before TensorFlow starts.
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "distributed_training.py"),
            "--quick",
            "--out",
            str(tmp_path),
        ],
        check=True,
        timeout=600,
        env={**os.environ, "CI": "true"},
    )
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    mirrored, multiworker = summary.values()
    assert mirrored["replicas"] == multiworker["replicas"] == 2
    assert multiworker["max_weight_difference_between_workers"] == 0.0
    # Same data, seed and global batch: the same training, either path.
    np.testing.assert_allclose(mirrored["loss"], multiworker["loss"], 1e-4)
    assert mirrored["loss"][-1] < mirrored["loss"][0]
    image = matplotlib.image.imread(tmp_path / "loss.png")
    assert image.shape[0] > 300 and image.shape[1] > 500
