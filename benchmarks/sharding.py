"""Benchmark: ring attention on 8 virtual devices vs one device (JAX).

`MultiHeadAttention(sequence_parallel="sequence")` under a
`keras.distribution` whose `(8,)` mesh is the `sequence` axis (ring
attention, `keras_attention.parallel`) against the same layer with no
distribution (ordinary attention on one device), causal self-attention,
batch 1, 8 heads × 64 (`--quick`: 4 × 32), compiled with `jax.jit`:

- **time**: forward and forward+backward, medians of interleaved runs;
  `ratio` = ring / one device. The 8 devices are virtual
  (`--xla_force_host_platform_device_count=8`) and share this machine's
  cores, so no speed-up is expected: the ratio shows what the ring's
  permutes and per-block loop cost, not what 8 accelerators would give.
- **work**: the query-key pairs the busiest device attends (the blocks the
  causal mask hides are skipped): the contiguous layout's last device
  attends all its `N` blocks; the zigzag layout (the ring's choice under a
  causal mask: device `r` holds chunks `r` and `2N - 1 - r` of `2N`) gives
  every device `2N + 1` of its `4N` chunk pairs.
- **logits**: the largest attention-logits tensor one device holds, in
  entries and MiB of float32: `B · H · (T/2N)²` for the zigzag ring
  against `B · H · T²`; and XLA's own count of the compiled forward's
  temporary buffers per device (`memory_analysis().temp_size_in_bytes`).

Prints one JSON line.

    python benchmarks/sharding.py [--quick]
"""

import os

DEVICES_FLAG = "--xla_force_host_platform_device_count=8"
if "xla_force_host_platform_device_count" not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " " + DEVICES_FLAG
    ).strip()
os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

MIB = 2**20


def _distribution():
    import keras

    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh((len(devices),), ("sequence",))
    layout_map = keras.distribution.LayoutMap(mesh)
    return keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="sequence"
    )


def _functions(layer, x, distribution):
    """Compiled forward and forward+backward of the layer on `x`."""
    import contextlib

    import jax

    trainable = [v.value for v in layer.trainable_variables]

    def forward(trainable, x):
        output, _ = layer.stateless_call(
            trainable, [], x, x, use_causal_mask=True
        )
        return output

    def loss(trainable, x):
        return jax.numpy.sum(forward(trainable, x) ** 2)

    scope = distribution.scope() if distribution else contextlib.nullcontext()
    with scope:  # the ring is chosen while tracing
        compiled = {
            "forward": jax.jit(forward).lower(trainable, x).compile(),
            "forward_backward": jax.jit(jax.grad(loss, argnums=(0, 1)))
            .lower(trainable, x)
            .compile(),
        }
    temp = compiled["forward"].memory_analysis()
    temp = None if temp is None else int(temp.temp_size_in_bytes)
    return compiled, trainable, temp


def _timed(function, *args):
    import jax

    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    return time.perf_counter() - start


def compare(length, num_heads, head_dim, repeats):
    """Ring vs one device at sequence length `length`."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec

    from keras_attention import parallel
    from keras_attention.layers import MultiHeadAttention

    width = num_heads * head_dim
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, length, width)).astype("float32")
    layer = MultiHeadAttention(
        num_heads, head_dim, sequence_parallel="sequence"
    )
    layer(x[:, :8], x[:, :8])  # build
    distribution = _distribution()
    num_devices = len(jax.devices())
    mesh = distribution.device_mesh.backend_mesh
    x_one = jax.device_put(x, jax.devices()[0])
    x_ring = jax.device_put(
        x, NamedSharding(mesh, PartitionSpec(None, "sequence", None))
    )
    # Compiled for the inputs' placement: one device, or split over the ring.
    one, trainable, one_temp = _functions(layer, x_one, None)
    ring, _, ring_temp = _functions(layer, x_ring, distribution)
    seconds = {}
    for name in ("forward", "forward_backward"):
        runs = [(one[name], x_one), (ring[name], x_ring)]
        for function, inputs in runs:  # warm-up
            _timed(function, trainable, inputs)
        times = [[], []]
        for _ in range(repeats):
            for (function, inputs), spent in zip(runs, times):
                spent.append(_timed(function, trainable, inputs))
        one_time, ring_time = (statistics.median(t) for t in times)
        seconds[name] = {
            "one_device": round(one_time, 4),
            "ring": round(ring_time, 4),
            "ratio": round(ring_time / one_time, 3),
        }
    causal = parallel._Ring("sequence", num_devices, None, True, None, None,
                            None, (num_heads,))  # fmt: skip
    work = {
        chunks: parallel.busiest_device_work(
            causal._replace(chunks=chunks), length, length
        )
        for chunks in (1, 2)
    }
    block = length // (2 * num_devices)  # zigzag: two chunks per device
    ring_logits = num_heads * block * block
    one_logits = parallel.logits_block_size(1, num_heads, length, 1)
    return {
        "length": length,
        "devices": num_devices,
        "seconds": seconds,
        "busiest_device_pairs": {
            "contiguous": work[1],
            "zigzag": work[2],
            "one_device": length * length,
            "zigzag_vs_contiguous": round(work[2] / work[1], 3),
        },
        "logits_per_device": {
            "ring_block": f"{block} x {block}",
            "one_device_block": f"{length} x {length}",
            "ring_entries": ring_logits,
            "one_device_entries": one_logits,
            "ring_mib": round(4 * ring_logits / MIB, 3),
            "one_device_mib": round(4 * one_logits / MIB, 3),
            "ratio": round(ring_logits / one_logits, 5),
        },
        "xla_temp_mib_per_device": {
            "ring": None if ring_temp is None else round(ring_temp / MIB, 3),
            "one_device": None
            if one_temp is None
            else round(one_temp / MIB, 3),
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    args = parser.parse_args()
    quick = args.quick
    heads, head_dim = (4, 32) if quick else (8, 64)
    lengths = (256, 512) if quick else (1024, 2048, 4096)
    rows = [
        compare(length, heads, head_dim, 3 if quick else 10)
        for length in lengths
    ]
    longest = rows[-1]
    result = {
        "benchmark": "sharding",
        "quick": quick,
        "heads": heads,
        "head_dim": head_dim,
        "ring": rows,
        "logits_ratio_at_max_T": longest["logits_per_device"]["ratio"],
        "forward_backward_ratio_at_max_T": longest["seconds"][
            "forward_backward"
        ]["ratio"],
    }
    devices = longest["devices"]
    pairs = longest["busiest_device_pairs"]
    result["targets"] = {
        # The point of the ring: a device's logits shrink by (2N)² (zigzag
        # chunks of T / 2N), and the busiest device's work by about half.
        f"logits_ratio == 1/(2*{devices})^2": result["logits_ratio_at_max_T"]
        == round(1 / (2 * devices) ** 2, 5),
        "zigzag busiest device <= 0.55 x contiguous": pairs[
            "zigzag_vs_contiguous"
        ]
        <= 0.55,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
