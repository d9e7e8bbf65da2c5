"""Benchmark: what score and mask modifiers cost, and what they save.

Causal self-attention, batch 1, 8 heads of 64 (model dim 512), TensorFlow,
`tf.function`. Three measurements, each configuration in a fresh
subprocess (memory is the growth of the peak RSS over the traced function's
baseline, as in `long_sequence.py`; time the median of the later runs):

- **memory with a bias**, T = 8192, forward: our `MultiHeadAttention(
  chunk_size=256, score_mod=ALiBi())` (the bias computed per key block)
  against keras's layer with the same ALiBi bias as a tensor: keras's
  `MultiHeadAttention` projections, then `keras.ops.dot_product_attention(
  bias=...)` with the `(1, H, T, T)` bias materialised (keras's layer takes
  no bias argument). `memory_ratio` = ours / keras, target ≤ 0.10.
- **block skipping**, T = 8192, forward, sliding window of 256 (causal):
  `mask_mod=Causal() & SlidingWindow(256)` (key blocks outside the window
  are never visited) against the same mask from a modifier that does not
  tell its key range (every block computed, then masked).
  `skip_time_ratio`, target ≤ 0.2.
- **cost of a modifier**, T = 1024, forward+backward: ours with
  `score_mod=ALiBi()` against ours without, dense and chunked.
  `mod_cost_ratio`, target ≤ 1.15.

    python benchmarks/score_mods.py [--quick]
"""

import argparse
import json
import os
import statistics
import sys
import time

from fresh_process import measure_in_child

HEADS, HEAD_DIM = 8, 64


def _layer(kind, length, chunk):
    """The callable `f(x)` of one configuration, and what it holds."""
    import keras

    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from keras_attention import mods
    from keras_attention import ops as attention_ops
    from keras_attention.layers import MultiHeadAttention

    if kind == "keras_bias":
        layer = keras.layers.MultiHeadAttention(HEADS, HEAD_DIM)
        layer.build(
            (1, length, HEADS * HEAD_DIM), (1, length, HEADS * HEAD_DIM)
        )
        q_idx, kv_idx, head = attention_ops.positions(
            length, length, rank=4, heads=(HEADS,)
        )
        bias = mods.ALiBi().bias(q_idx, kv_idx, head, num_heads=HEADS)

        def forward(x):
            q, k, v = (d(x) for d in (layer.query_dense, layer.key_dense,
                                       layer.value_dense))  # fmt: skip
            out = keras.ops.dot_product_attention(
                q, k, v, bias=bias, is_causal=True, scale=HEAD_DIM**-0.5
            )
            return layer.output_dense(out)

        return forward, layer
    options = {
        "ours_alibi": dict(chunk_size=chunk, score_mod=mods.ALiBi()),
        "window_skip": dict(
            chunk_size=chunk,
            mask_mod=mods.Causal() & mods.SlidingWindow(256),
        ),
        "window_no_skip": dict(chunk_size=chunk, mask_mod=_NoRange(256)),
        "dense": {},
        "dense_alibi": dict(score_mod=mods.ALiBi()),
        "chunked": dict(chunk_size=chunk),
        "chunked_alibi": dict(chunk_size=chunk, score_mod=mods.ALiBi()),
    }[kind]
    layer = MultiHeadAttention(HEADS, HEAD_DIM, **options)
    layer.build((1, length, HEADS * HEAD_DIM), (1, length, HEADS * HEAD_DIM))
    causal = kind not in ("window_skip", "window_no_skip")
    return lambda x: layer(x, x, use_causal_mask=causal), layer


def _no_range_class():
    from keras_attention import mods

    class NoRange(mods.MaskMod):
        """Causal sliding window that does not tell its key range."""

        def __init__(self, window):
            self.inner = mods.Causal() & mods.SlidingWindow(window)

        def call(self, q_idx, kv_idx, head, **context):
            return self.inner(q_idx, kv_idx, head, **context)

    return NoRange


def _NoRange(window):
    return _no_range_class()(window)


def measure(kind, length, backward, chunk, repeats):
    """In the subprocess: peak extra MiB and median seconds."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import resource

    import numpy as np
    import tensorflow as tf

    forward, layer = _layer(kind, length, chunk)
    x = tf.constant(
        np.random.default_rng(0).normal(size=(1, length, HEADS * HEAD_DIM)),
        "float32",
    )

    @tf.function
    def run(x):
        if not backward:
            return forward(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(forward(x))
        return tape.gradient(loss, [x, *layer.trainable_variables])

    run.get_concrete_function(tf.TensorSpec(x.shape, x.dtype))  # trace only
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as statm:
        baseline = int(statm.read().split()[1]) * page
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), run(x))
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "peak_extra_mib": round((peak - baseline) / 2**20, 1),
        "seconds": round(statistics.median(times[1:] or times), 4),
    }


def run(kind, length, backward, chunk, repeats):
    """Measure one configuration in a fresh subprocess."""
    return measure_in_child(__file__, kind, length, backward, chunk, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return
    long, short, chunk, repeats = (
        (1024, 256, 128, 2) if args.quick else (8192, 1024, 256, 4)
    )
    ours = run("ours_alibi", long, False, chunk, repeats)
    keras_bias = run("keras_bias", long, False, chunk, repeats)
    skip = run("window_skip", long, False, chunk, repeats)
    no_skip = run("window_no_skip", long, False, chunk, repeats)
    cost = {}
    for path in ("dense", "chunked"):
        plain = run(path, short, True, chunk, repeats + 3)
        alibi = run(f"{path}_alibi", short, True, chunk, repeats + 3)
        cost[path] = round(alibi["seconds"] / plain["seconds"], 3)
    report = {
        "benchmark": "score_mods",
        "quick": args.quick,
        "num_heads": HEADS,
        "head_dim": HEAD_DIM,
        "chunk_size": chunk,
        "memory_T": long,
        "alibi_chunked": ours,
        "alibi_keras_dense_bias": keras_bias,
        "memory_ratio": round(
            ours["peak_extra_mib"] / keras_bias["peak_extra_mib"], 3
        ),
        "window_skipping": skip,
        "window_all_blocks": no_skip,
        "skip_time_ratio": round(skip["seconds"] / no_skip["seconds"], 3),
        "cost_T": short,
        "mod_cost_ratio": cost,
        "targets": "memory_ratio <= 0.10, skip_time_ratio <= 0.2, "
        "mod_cost_ratio <= 1.15",
    }
    report["targets_met"] = (
        report["memory_ratio"] <= 0.10
        and report["skip_time_ratio"] <= 0.2
        and max(cost.values()) <= 1.15
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
