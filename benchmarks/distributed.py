"""MirroredStrategy overhead: steps/s with 1 vs 2 logical CPU devices.

On this 2-core CPU, two replicas share the same cores, so no speed-up is
expected: the number is the cost of the strategy (per-replica split,
all-reduce). Each configuration runs in its own subprocess (logical devices
must be set before TensorFlow starts). Prints one JSON line:

    {"benchmark": "distributed", "steps_per_second": {"1": .., "2": ..},
     "overhead_ratio": t(2 devices) / t(1 device), ...}

    python benchmarks/distributed.py [--quick]
"""

import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
devices, steps, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cpu = tf.config.list_physical_devices("CPU")[0]
if devices > 1:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
sys.path.insert(0, path)
import keras
import keras_attention as ka
strategy = tf.distribute.MirroredStrategy(
    [f"/cpu:{i}" for i in range(devices)])
keras.utils.set_random_seed(0)
length, batch = 32, 64
with strategy.scope():
    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(1000, 128, mask_zero=True)(tokens)
    x = ka.Attention(score="scaled_dot")(x, x)
    x = keras.layers.Dense(128, activation="relu")(x)
    logits = keras.layers.Dense(10)(ka.AttentionPooling()(x))
    model = keras.Model(tokens, logits)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
rng = np.random.default_rng(0)
x = rng.integers(1, 1000, size=(batch * steps, length)).astype("int32")
y = rng.integers(0, 10, size=(batch * steps,)).astype("int32")
model.fit(x[: batch * 2], y[: batch * 2], batch_size=batch, verbose=0)
start = time.perf_counter()
model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
print(steps / (time.perf_counter() - start))
"""


def measure(devices, steps):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(devices), str(steps), root],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    steps = 10 if args.quick else 100
    start = time.perf_counter()
    rates = {str(d): measure(d, steps) for d in (1, 2)}
    print(
        json.dumps(
            {
                "benchmark": "distributed",
                "model": "Embedding+Attention+AttentionPooling, batch 64, T 32",
                "steps": steps,
                "steps_per_second": {k: round(v, 2) for k, v in rates.items()},
                "overhead_ratio": round(rates["1"] / rates["2"], 3),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
