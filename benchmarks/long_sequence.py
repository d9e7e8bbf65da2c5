"""Benchmark: memory and time of chunked attention vs keras at long T.

Causal self-attention, batch 1, 8 heads, head size 64 (model dim 512):
our `MultiHeadAttention(chunk_size=...)` against
`keras.layers.MultiHeadAttention`, forward (inference) at T = 2048, 4096,
8192, and forward+backward at T = 4096.

What "peak memory" measures: every configuration runs in a fresh Python
subprocess that builds the layer, traces the `tf.function` and creates the
inputs, then reads its current resident set size (RSS, /proc/self/statm)
and runs the computation once; the reported number is the growth of the
process's peak RSS (`resource.getrusage(...).ru_maxrss`) over that baseline,
i.e. the extra memory the attention call needed at its peak, in MiB
(TensorFlow's CPU allocator returns freed memory to malloc, so this is an
upper bound of the live tensors). Time is the median of the later runs in
the same subprocess. Prints one JSON line with ratios ours / keras.

    python benchmarks/long_sequence.py [--quick] [--chunk-size 256]
"""

import argparse
import json
import os
import sys

from fresh_process import measure_in_child

HEADS, HEAD_DIM = 8, 64


def measure(implementation, length, backward, chunk_size, repeats):
    """Run in the subprocess: returns peak extra MiB and median seconds."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import resource
    import statistics
    import time

    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from keras_attention.layers import MultiHeadAttention

    if implementation == "keras":
        layer = keras.layers.MultiHeadAttention(HEADS, HEAD_DIM)
    else:
        layer = MultiHeadAttention(HEADS, HEAD_DIM, chunk_size=chunk_size)
    dim = HEADS * HEAD_DIM
    layer.build((1, length, dim), (1, length, dim))
    x = tf.constant(
        np.random.default_rng(0).normal(size=(1, length, dim)), "float32"
    )

    @tf.function
    def forward(x):
        return layer(x, x, use_causal_mask=True)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, x, use_causal_mask=True))
        return tape.gradient(loss, [x, *layer.trainable_variables])

    fn = forward_backward if backward else forward
    fn.get_concrete_function(tf.TensorSpec(x.shape, x.dtype))  # trace only
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as statm:
        baseline = int(statm.read().split()[1]) * page  # bytes
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn(x))
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes
    later = times[1:] or times
    return {
        "peak_extra_mib": round((peak - baseline) / 2**20, 1),
        "seconds": round(statistics.median(later), 3),
    }


def run(implementation, length, backward, chunk_size, repeats):
    """Measure one configuration in a fresh subprocess."""
    return measure_in_child(
        __file__, implementation, length, backward, chunk_size, repeats
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return
    if args.quick:
        forward_lengths, backward_length, repeats = (512,), 512, 2
    else:
        forward_lengths, backward_length, repeats = (2048, 4096, 8192), 4096, 3
    chunk = args.chunk_size
    rows = []
    configs = [(length, False) for length in forward_lengths]
    configs.append((backward_length, True))
    for length, backward in configs:
        ours = run("ours", length, backward, chunk, repeats)
        theirs = run("keras", length, backward, chunk, repeats)
        rows.append(
            {
                "T": length,
                "pass": "forward_backward" if backward else "forward",
                "ours": ours,
                "keras": theirs,
                "memory_ratio": round(
                    ours["peak_extra_mib"] / theirs["peak_extra_mib"], 3
                ),
                "time_ratio": round(ours["seconds"] / theirs["seconds"], 3),
            }
        )
    longest = [
        r
        for r in rows
        if r["T"] == max(forward_lengths) and r["pass"] == "forward"
    ][0]
    backward_row = rows[-1]
    print(
        json.dumps(
            {
                "benchmark": "long_sequence",
                "quick": args.quick,
                "num_heads": HEADS,
                "head_dim": HEAD_DIM,
                "batch": 1,
                "chunk_size": chunk,
                "memory": "peak RSS growth during the call, fresh process",
                "results": rows,
                "target_forward": "memory <= 0.10 and time <= 1.2 at max T",
                "target_forward_met": longest["memory_ratio"] <= 0.10
                and longest["time_ratio"] <= 1.2,
                "target_backward": "memory <= 0.50",
                "target_backward_met": backward_row["memory_ratio"] <= 0.5,
            }
        )
    )


if __name__ == "__main__":
    main()
