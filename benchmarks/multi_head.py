"""Benchmark: our `MultiHeadAttention` vs `keras.layers.MultiHeadAttention`.

Self-attention, 8 heads, key_dim 64, model dim 512, batch 16, no mask, under
`tf.function`, forward and forward+backward (gradients of the inputs and all
weights), T = 64 .. 1024. Both layers hold the same weights. Each timing is
the median of several runs, ours and keras interleaved. Prints one JSON line;
`ratio` = our time / keras's time (target <= 1.0).

    python benchmarks/multi_head.py [--quick]
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_attention.layers import MultiHeadAttention  # noqa: E402


def compile_steps(layer):
    """`tf.function`s running the forward and the forward+backward pass."""

    @tf.function
    def forward(x):
        return layer(x, x)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, x, training=True))
        return tape.gradient(loss, [x, *layer.trainable_variables])

    return forward, forward_backward


def timed(fn, x):
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), fn(x))  # wait for results
    return time.perf_counter() - start


def compare(fn_ours, fn_keras, x, repeats):
    """Median seconds of each, interleaved so both see the same machine."""
    for fn in (fn_ours, fn_keras):
        timed(fn, x)  # trace and warm up
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(timed(fn_ours, x))
        theirs.append(timed(fn_keras, x))
    return statistics.median(ours), statistics.median(theirs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    args = parser.parse_args()
    if args.quick:
        batch, dim, heads, key_dim = 2, 32, 4, 8
        lengths, repeats = (16, 32), 3
    else:
        batch, dim, heads, key_dim = 16, 512, 8, 64
        lengths, repeats = (64, 128, 256, 512, 1024), 7
    rng = np.random.default_rng(0)
    results = []
    for length in lengths:
        keras_layer = keras.layers.MultiHeadAttention(heads, key_dim)
        ours = MultiHeadAttention(heads, key_dim)
        x = tf.constant(rng.normal(size=(batch, length, dim)), "float32")
        keras_layer(x, x), ours(x, x)
        ours.set_weights(keras_layer.get_weights())
        np.testing.assert_allclose(ours(x, x), keras_layer(x, x), atol=1e-4)
        ours_steps = compile_steps(ours)
        keras_steps = compile_steps(keras_layer)
        row = {"T": length}
        for name, fn_ours, fn_keras in zip(
            ("forward", "forward_backward"), ours_steps, keras_steps
        ):
            t_ours, t_keras = compare(fn_ours, fn_keras, x, repeats)
            row[f"{name}_ms"] = round(1000 * t_ours, 2)
            row[f"{name}_keras_ms"] = round(1000 * t_keras, 2)
            row[f"{name}_ratio"] = round(t_ours / t_keras, 3)
        results.append(row)
    worst = max(
        max(r["forward_ratio"], r["forward_backward_ratio"]) for r in results
    )
    print(
        json.dumps(
            {
                "benchmark": "multi_head",
                "quick": args.quick,
                "batch": batch,
                "dim": dim,
                "num_heads": heads,
                "key_dim": key_dim,
                "repeats": repeats,
                "results": results,
                "max_ratio": worst,
                "target_ratio": 1.0,
                "target_met": worst <= 1.0,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
