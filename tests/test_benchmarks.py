"""Every benchmark script runs with `--quick` and prints its JSON line.

These are smoke tests of the scripts (they must not rot), not timings: the
ratios at tiny sizes mean nothing and are not asserted.
"""

import json
import os
import subprocess
import sys

import pytest

# The scripts time TensorFlow (`backends.py` starts the other backends in
# processes of its own; `sharding.py` runs itself on JAX).
pytestmark = pytest.mark.tensorflow_only

ROOT = os.path.dirname(os.path.dirname(__file__))
EXPECTED_KEYS = {
    "backends": "results",
    "multi_head": "max_ratio",
    "packed_sequences": "packed_speedup",
    "score_mods": "memory_ratio",
    "long_sequence": "results",
    "decoding": "results",
    "rnn_decoder": "train_ratio",
    "distributed": "overhead_ratio",
    "real_translation": "seq2seq",
    "attention_family": "overhead",
    "on_device": "transformer",
    "sharding": "logits_ratio_at_max_T",  # JAX, 8 virtual devices
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_KEYS))
def test_benchmark_quick_run_prints_one_json_line(name):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", f"{name}.py")]
        + ["--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [
        line for line in result.stdout.splitlines() if line.startswith("{")
    ]
    assert len(lines) == 1, result.stdout[-3000:]
    report = json.loads(lines[0])
    assert EXPECTED_KEYS[name] in report, report


@pytest.mark.slow
def test_real_translation_trains_one_transformer_per_attention_kind():
    script = os.path.join(ROOT, "benchmarks", "real_translation.py")
    result = subprocess.run(
        [sys.executable, script, "--quick", "--attention", "latent,linear"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for kind in ("latent", "linear"):
        assert "bleu_beam" in report[f"transformer_{kind}"], report
    assert "seq2seq" not in report
