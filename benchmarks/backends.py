"""Benchmark: our layers and models on TensorFlow, JAX and PyTorch.

For each backend, in a fresh subprocess (`KERAS_BACKEND` is read at import):

- `MultiHeadAttention` forward+backward (gradients of the input and every
  weight), ours vs `keras.layers.MultiHeadAttention` on the same backend
  with the same weights: self-attention, batch 16, T = 256, model dim 512,
  8 heads of 64, no mask. Compiled as a user of that backend would:
  `tf.function` on TensorFlow, `jax.jit` of `jax.grad` of a stateless call
  on JAX, eager autograd on PyTorch. `mha_ratio` = ours / keras.
- `Transformer.generate`, greedy, batch 16, a 32-token source, 32 new
  tokens (the end token disabled so every step runs), 2+2 blocks of width
  256: compiled as `generate` compiles it on that backend (`tf.function`,
  `jax.jit`; on PyTorch the decoding methods captured with `torch.export`,
  `keras_attention.models.captured`), with the first and second calls'
  times (the compilation; on PyTorch the capture is the second call's).
  On PyTorch also, for comparison, the same function uncaptured (eager
  Keras, the best of a few runs) and `torch.compile` of it.
  `generate_ratio_vs_tensorflow` = this backend / TensorFlow.

Timings are medians of interleaved repeats after a warm-up. Prints one JSON
line.

    python benchmarks/backends.py [--quick] [--backends tensorflow,jax,torch]
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")


def _sync(x):
    import keras

    return keras.tree.map_structure(lambda t: keras.ops.convert_to_numpy(t), x)


def _timed(fn, *args):
    start = time.perf_counter()
    _sync(fn(*args))
    return time.perf_counter() - start


def _forward_backward(layer, x):
    """`fn(x)`: gradients of `sum(layer(x, x))`, compiled per backend."""
    import keras
    from keras import ops

    variables = layer.trainable_variables
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, x))
            return tape.gradient(loss, [x, *variables])

        return step
    if backend == "jax":
        import jax

        def loss(values, x):
            with keras.StatelessScope(state_mapping=zip(variables, values)):
                return ops.sum(layer(x, x))

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return lambda x: grad([v.value for v in variables], x)
    import torch

    def step(x):
        x = x.detach().requires_grad_()
        loss = ops.sum(layer(x, x))
        return torch.autograd.grad(loss, [x] + [v.value for v in variables])

    return step


def _median_pair(first, second, args, repeats):
    for fn in (first, second):
        _timed(fn, *args)  # compile and warm up
    times = ([], [])
    for _ in range(repeats):
        times[0].append(_timed(first, *args))
        times[1].append(_timed(second, *args))
    return tuple(1000 * statistics.median(t) for t in times)


def measure_attention(quick):
    import keras
    import numpy as np

    from keras_attention.layers import MultiHeadAttention

    batch, length, heads, key_dim = (2, 16, 2, 8) if quick else (16, 256, 8, 64)
    x = np.random.default_rng(0).normal(size=(batch, length, heads * key_dim))
    x = keras.ops.convert_to_tensor(x.astype("float32"))
    theirs = keras.layers.MultiHeadAttention(heads, key_dim)
    ours = MultiHeadAttention(heads, key_dim)
    theirs(x, x), ours(x, x)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(
        _sync(ours(x, x)), _sync(theirs(x, x)), atol=1e-4
    )
    ours_ms, keras_ms = _median_pair(
        _forward_backward(ours, x),
        _forward_backward(theirs, x),
        (x,),
        3 if quick else 7,
    )
    return {
        "mha_fwd_bwd_ms": round(ours_ms, 2),
        "keras_mha_fwd_bwd_ms": round(keras_ms, 2),
        "mha_ratio": round(ours_ms / keras_ms, 3),
    }


def measure_generate(quick):
    import keras
    import numpy as np

    from keras_attention.models import Transformer

    keras.utils.set_random_seed(0)
    vocab, hidden = (50, 16) if quick else (1000, 256)
    batch, length, repeats = (2, 6, 2) if quick else (16, 32, 5)
    model = Transformer(
        vocab, vocab, num_layers=1 if quick else 2, hidden_dim=hidden,
        num_heads=4, intermediate_dim=4 * hidden, dropout=0.0,
    )  # fmt: skip
    bias = keras.ops.convert_to_numpy(model.logits_layer.bias)
    bias[2] = -1e4  # no end token: every step runs
    model.logits_layer.bias.assign(bias)
    source = np.random.default_rng(0).integers(3, vocab, (batch, length))
    source = source.astype("int32")
    first = time.perf_counter()
    tokens = _sync(model.generate(source, length))
    compile_s = time.perf_counter() - first
    assert (tokens != 0).all()
    # PyTorch captures its graphs on a bucket's second call.
    second_s = _timed(model.generate, source, length)
    times = [_timed(model.generate, source, length) for _ in range(repeats)]
    row = {
        "generate_ms": round(1000 * statistics.median(times), 1),
        "generate_first_call_s": round(compile_s, 2),
        "generate_second_call_s": round(second_s, 2),
    }
    if keras.config.backend() == "torch":
        row.update(_torch_uncaptured(model, source, length, repeats))
    if keras.config.backend() == "torch" and not quick:  # a minute to compile
        row.update(_torch_compile(model, source, length, repeats))
    return row


def _torch_uncaptured(model, source, length, repeats):
    """`generate_function` run eagerly: every Keras layer call and
    `keras.ops` call in Python, as `generate` ran before it captured its
    decoding methods."""
    import torch

    eager = torch.no_grad()(lambda s: model.generate_function(s, length))
    times = [_timed(eager, source) for _ in range(max(2, repeats // 2))]
    return {"torch_uncaptured_generate_ms": round(1000 * min(times), 1)}


def _torch_compile(model, source, length, repeats):
    """`torch.compile` of `generate_function`: its first call and speed."""
    import torch

    compiled = torch.compile(
        lambda s: model.generate_function(s, length), dynamic=False
    )
    source = torch.as_tensor(source)
    try:
        with torch.no_grad():
            first = time.perf_counter()
            compiled(source)
            compile_s = time.perf_counter() - first
            times = [_timed(compiled, source) for _ in range(repeats)]
    except Exception as error:  # compile failures are a result here
        return {"torch_compile": f"failed: {type(error).__name__}"}
    return {
        "torch_compile_generate_ms": round(1000 * statistics.median(times), 1),
        "torch_compile_first_call_s": round(compile_s, 2),
    }


def child(quick):
    import keras

    row = {"backend": keras.config.backend(), "keras": keras.__version__}
    row.update(measure_attention(quick))
    row.update(measure_generate(quick))
    print(json.dumps(row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.quick)
    rows = []
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for backend in args.backends.split(","):
        if importlib.util.find_spec(backend) is None:
            rows.append({"backend": backend, "skipped": "not installed"})
            continue
        env = {
            **os.environ,
            "KERAS_BACKEND": backend,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": root,
        }
        result = subprocess.run(
            [sys.executable, __file__, "--child"]
            + (["--quick"] if args.quick else []),
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            rows.append({"backend": backend, "error": result.stderr[-500:]})
            continue
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    reference = next(
        (r for r in rows if r["backend"] == "tensorflow" and "error" not in r),
        None,
    )
    for row in rows:
        if reference and "generate_ms" in row:
            row["generate_ratio_vs_tensorflow"] = round(
                row["generate_ms"] / reference["generate_ms"], 3
            )
    ratios = [r["mha_ratio"] for r in rows if "mha_ratio" in r]
    print(
        json.dumps(
            {
                "benchmark": "backends",
                "quick": args.quick,
                "results": rows,
                "max_mha_ratio": max(ratios) if ratios else None,
                "target_mha_ratio": 0.85,
                "target_jax_generate_ratio": 1.0,
                "target_torch_generate_ratio": 1.5,
                "target_first_call_s": 10.0,
            }
        )
    )


if __name__ == "__main__":
    main()
