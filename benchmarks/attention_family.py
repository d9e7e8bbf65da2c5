"""Benchmark: the attention family against `MultiHeadAttention`.

Model width 512 (8 heads × 64), TensorFlow, `tf.function`, float32; times
are medians of interleaved runs, so each ratio compares two layers on the
same machine at the same moment.

- **latent**: the decoding cache of `MultiHeadLatentAttention` (latent 128
  + rotary 32) in bytes per token and layer vs `MultiHeadAttention`'s
  (`2 · 8 · 64` numbers), and the time of one cached decoding step at a
  4,096-token cache (batch 1 and 16), MLA / MHA.
- **linear**: causal forward of `LinearAttention` (elu) vs chunked softmax
  attention (`MultiHeadAttention(chunk_size=256)`) at T = 4,096 and 16,384,
  batch 1: time, and peak memory measured as `long_sequence.py` does (the
  growth of a fresh process's peak RSS during the call, in MiB).
- **overhead**: forward+backward time at T = 1,024 (batch 2) of
  `MultiHeadAttention(use_sinks=True)`, `(qk_norm="rms")` and
  `DifferentialAttention` (4 heads of 2 × 64: the paper's parameter-matched
  setting, as many weights as 8 heads × 64) vs plain `MultiHeadAttention`.

Prints one JSON line.

    python benchmarks/attention_family.py [--quick]
"""

import argparse
import json
import os
import statistics
import sys
import time

from fresh_process import measure_in_child

HEADS, HEAD_DIM = 8, 64
WIDTH = HEADS * HEAD_DIM


def _layer(kind, **kwargs):
    """A layer of the family at width 512."""
    import keras_attention as ka

    if kind == "multi_head":
        return ka.MultiHeadAttention(HEADS, HEAD_DIM, **kwargs)
    if kind == "latent":
        return ka.MultiHeadLatentAttention(
            HEADS, HEAD_DIM, kv_latent_dim=128, rotary_dim=32, **kwargs
        )
    if kind == "differential":
        return ka.DifferentialAttention(HEADS // 2, HEAD_DIM, **kwargs)
    return ka.LinearAttention(HEADS, HEAD_DIM, **kwargs)


def _timed(fn, *args):
    import tensorflow as tf

    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    return time.perf_counter() - start


def _interleaved(functions, args, repeats):
    """Median seconds of each function, run in turn after a warm-up."""
    for fn in functions:
        _timed(fn, *args)
    times = [[] for _ in functions]
    for _ in range(repeats):
        for fn, seconds in zip(functions, times):
            seconds.append(_timed(fn, *args))
    return [statistics.median(s) for s in times]


def cache_and_decode(cache_length, batches, repeats):
    """Bytes per token of each cache and the decode-step time ratio."""
    import numpy as np
    import tensorflow as tf

    layers = {kind: _layer(kind) for kind in ("multi_head", "latent")}
    result = {"cache_length": cache_length}
    for kind, layer in layers.items():
        cache = layer.initial_cache(1, cache_length)
        per_token = int(np.prod(cache.shape)) // cache_length * 4  # float32
        result[f"{kind}_cache_bytes_per_token"] = per_token
    result["cache_ratio"] = round(
        result["latent_cache_bytes_per_token"]
        / result["multi_head_cache_bytes_per_token"],
        3,
    )
    for batch in batches:
        x = tf.constant(np.random.rand(batch, 1, WIDTH), "float32")
        steps, args = [], []
        for layer in layers.values():
            layer(x, x)  # build
            cache = layer.initial_cache(batch, cache_length)

            @tf.function
            def step(x, cache, layer=layer):
                return layer(
                    x, x, use_causal_mask=True, cache=cache,
                    cache_update_index=cache_length - 1,
                )  # fmt: skip

            steps.append(step)
            args.append(cache)
        # Each step takes its own cache: interleave by hand.
        for fn, cache in zip(steps, args):
            _timed(fn, x, cache)
        times = [[], []]
        for _ in range(repeats):
            for fn, cache, seconds in zip(steps, args, times):
                seconds.append(_timed(fn, x, cache))
        theirs, ours = (statistics.median(s) for s in times)  # MHA, MLA
        result[f"decode_step_ms_batch_{batch}"] = {
            "latent": round(ours * 1e3, 3),
            "multi_head": round(theirs * 1e3, 3),
            "ratio": round(ours / theirs, 3),
        }
    return result


def linear_child(kind, length, repeats):
    """In a fresh process: peak extra MiB and median seconds of a causal
    forward pass (see `long_sequence.py`)."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import resource

    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    layer = (
        _layer("linear")
        if kind == "linear"
        else _layer("multi_head", chunk_size=256)
    )
    layer.build((1, length, WIDTH), (1, length, WIDTH))
    x = tf.constant(np.random.rand(1, length, WIDTH), "float32")

    @tf.function
    def forward(x):
        return layer(x, x, use_causal_mask=True)

    forward.get_concrete_function(tf.TensorSpec(x.shape, x.dtype))
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as statm:
        baseline = int(statm.read().split()[1]) * page
    times = [_timed(forward, x) for _ in range(repeats)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "peak_extra_mib": round((peak - baseline) / 2**20, 1),
        "seconds": round(statistics.median(times[1:] or times), 3),
    }


def linear_vs_chunked(lengths, repeats):
    rows = []
    for length in lengths:
        linear = measure_in_child(__file__, "linear", length, repeats)
        chunked = measure_in_child(__file__, "chunked", length, repeats)
        rows.append(
            {
                "T": length,
                "linear": linear,
                "chunked_softmax": chunked,
                "time_ratio": round(linear["seconds"] / chunked["seconds"], 3),
                "memory_ratio": round(
                    linear["peak_extra_mib"] / chunked["peak_extra_mib"], 3
                ),
            }
        )
    growth = rows[-1]["linear"]["peak_extra_mib"] / max(
        rows[0]["linear"]["peak_extra_mib"], 1e-9
    )
    return {"rows": rows, "linear_memory_growth": round(growth, 3)}


def overhead(length, batch, repeats):
    """Forward+backward time of each variant / plain multi-head."""
    import numpy as np
    import tensorflow as tf

    variants = {
        "multi_head": _layer("multi_head"),
        "sinks": _layer("multi_head", use_sinks=True),
        "qk_norm": _layer("multi_head", qk_norm="rms"),
        "differential": _layer("differential"),
    }
    x = tf.constant(np.random.rand(batch, length, WIDTH), "float32")
    functions = []
    for layer in variants.values():
        layer(x, x)

        @tf.function
        def step(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, x, use_causal_mask=True))
            return tape.gradient(loss, [x, *layer.trainable_variables])

        functions.append(step)
    times = dict(zip(variants, _interleaved(functions, (x,), repeats)))
    plain = times["multi_head"]
    return {
        "T": length,
        "batch": batch,
        "seconds": {k: round(v, 4) for k, v in times.items()},
        "ratios": {
            k: round(v / plain, 3)
            for k, v in times.items()
            if k != "multi_head"
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(linear_child(*json.loads(args.child))))
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    quick = args.quick
    result = {
        "benchmark": "attention_family",
        "quick": quick,
        "latent": cache_and_decode(
            256 if quick else 4096,
            (1,) if quick else (1, 16),
            3 if quick else 20,
        ),
        "linear": linear_vs_chunked(
            (512, 1024) if quick else (4096, 16384), 2 if quick else 3
        ),
        "overhead": overhead(128 if quick else 1024, 2, 3 if quick else 10),
    }
    latent, linear = result["latent"], result["linear"]
    longest = linear["rows"][-1]
    result["targets"] = {
        "latent_cache_ratio <= 0.25": latent["cache_ratio"] <= 0.25,
        "latent_decode_ratio <= 1.0": all(
            v["ratio"] <= 1.0
            for k, v in latent.items()
            if k.startswith("decode_step")
        ),
        "linear_time_ratio <= 0.25 at max T": longest["time_ratio"] <= 0.25,
        "linear_memory_growth <= 1.3": linear["linear_memory_growth"] <= 1.3,
        "sinks <= 1.10": result["overhead"]["ratios"]["sinks"] <= 1.10,
        "qk_norm <= 1.10": result["overhead"]["ratios"]["qk_norm"] <= 1.10,
        "differential <= 2.2": result["overhead"]["ratios"]["differential"]
        <= 2.2,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
