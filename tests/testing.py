"""Shared test helper: `check_layer`, the project's `run_layer_test`."""

import os
import sys
import tempfile

import keras
import numpy as np
from keras import ops


def _to_numpy(x):
    return keras.tree.map_structure(lambda t: np.asarray(t), x)


def as_float32(x):
    """A (possibly half-precision) tensor as float32 NumPy; PyTorch's bfloat16
    has no NumPy dtype, so cast before converting."""
    return keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def check_layer(
    cls,
    kwargs,
    inputs,
    expected_shape,
    call_kwargs=None,
    num_weights=None,
    mixed_precision=True,
    atol=1e-6,
):
    """Exercise a layer the way `keras`'s `run_layer_test` does.

    Checks: `get_config`/`from_config` round trip, eager call output shape,
    symbolic (functional) call shape, number of weights, `.keras` save/load
    of a functional model with identical outputs, and a finite output under
    the `mixed_float16` policy.

    Args:
        cls: the layer class.
        kwargs: constructor arguments.
        inputs: a NumPy array or a list of arrays (positional call args).
        expected_shape: the expected shape of the (first) output.
        call_kwargs: extra keyword arguments for `call`.
        num_weights: expected `len(layer.weights)`, or `None` to skip.
        mixed_precision: whether to run the `mixed_float16` check.
        atol: tolerance of the save/load comparison.

    Returns:
        The eager output of the layer (NumPy).
    """
    call_kwargs = call_kwargs or {}
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]

    layer = cls(**kwargs)
    eager = _to_numpy(layer(*inputs, **call_kwargs))
    assert _first(eager).shape == tuple(expected_shape)
    if num_weights is not None:
        assert len(layer.weights) == num_weights

    # Config round trip: same config, same outputs with the same weights.
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    clone(*inputs, **call_kwargs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        _first(_to_numpy(clone(*inputs, **call_kwargs))),
        _first(eager),
        atol=atol,
    )

    # Symbolic call in a functional model, then `.keras` save/load.
    symbolic = [
        keras.Input(shape=x.shape[1:], batch_size=None, dtype=str(x.dtype))
        for x in inputs
    ]
    outputs = cls.from_config(config)(*symbolic, **call_kwargs)
    model = keras.Model(symbolic, outputs)
    out_shape = _first(outputs).shape
    assert tuple(out_shape[1:]) == tuple(expected_shape[1:])
    expected = _first(_to_numpy(model(inputs)))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        restored = keras.models.load_model(path)
    np.testing.assert_allclose(
        _first(_to_numpy(restored(inputs))), expected, atol=atol
    )

    if mixed_precision:
        half = cls(**{**kwargs, "dtype": "mixed_float16"})
        cast = [
            x.astype("float16") if x.dtype.kind == "f" else x for x in inputs
        ]
        result = _first(half(*cast, **call_kwargs))
        assert bool(ops.all(ops.isfinite(ops.cast(result, "float32"))))
    return eager


def load_example(name, folder="examples"):
    """Import `examples/NAME.py` (or `FOLDER/NAME.py`) as a module.

    Examples and benchmarks are scripts, not a package.
    """
    import importlib.util
    import pathlib

    folder = pathlib.Path(__file__).resolve().parents[1] / folder
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))  # as when run as a script
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def compiled(fn):
    """`fn` compiled for the backend, as `generate` is compiled.

    `tf.function` on TensorFlow, `jax.jit` on JAX, and `fn` itself on
    PyTorch (eager).
    """
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


def gradients(loss_fn, variables=(), inputs=()):
    """Gradients of `loss_fn(*inputs)` on the current backend, as NumPy.

    Backend-neutral: a `tf.GradientTape` on TensorFlow, `jax.grad` of a
    stateless call on JAX (the variables' values are the arguments), and
    `torch.autograd.grad` on PyTorch.

    Args:
        loss_fn: `(*inputs) -> scalar loss`, using the layers that own
            `variables`.
        variables: Keras variables to differentiate against.
        inputs: NumPy arrays to differentiate against too.

    Returns:
        A list of NumPy gradients: the variables', then the inputs'.
    """
    variables = list(variables)
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = [tf.constant(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = loss_fn(*inputs)
        grads = tape.gradient(loss, variables + inputs)
    elif backend == "jax":
        import jax

        def stateless(values, inputs):
            mapping = list(zip(variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return loss_fn(*inputs)

        values = [v.value for v in variables]
        inputs = [jax.numpy.asarray(x) for x in inputs]
        grad_values, grad_inputs = jax.grad(stateless, argnums=(0, 1))(
            values, inputs
        )
        grads = list(grad_values) + list(grad_inputs)
    else:
        import torch

        inputs = [torch.tensor(x, requires_grad=True) for x in inputs]
        loss = loss_fn(*inputs)
        grads = torch.autograd.grad(
            loss, [v.value for v in variables] + inputs, allow_unused=True
        )
    return [
        np.zeros(tuple(x.shape))
        if g is None
        else np.asarray(ops.convert_to_numpy(g))
        for g, x in zip(grads, variables + list(inputs))
    ]


def decode_in_steps(layer, x, prefill=2, attention_mask=None):
    """`layer` over `x` `(B, T, d)` through the decoding contract.

    `cache = layer.initial_cache(B, T)`, a prefill of the first `prefill`
    tokens at index 0, then one token at a time, each with
    `use_causal_mask=True`, or with `attention_mask(index, new_tokens)` (a
    keras-hub-style mask over the whole cache) when given.

    Returns:
        The outputs concatenated, NumPy `(B, T, d)`, and the last cache.
    """
    batch, length = x.shape[:2]
    cache = layer.initial_cache(batch, length)
    steps = [(0, prefill)] + [(i, 1) for i in range(prefill, length)]
    outputs = []
    for index, new in steps:
        tokens = x[:, index : index + new]
        masks = (
            {"use_causal_mask": True}
            if attention_mask is None
            else {"attention_mask": attention_mask(index, new)}
        )
        output, cache = layer(
            tokens, tokens, cache=cache, cache_update_index=index, **masks
        )
        outputs.append(np.asarray(output))
    return np.concatenate(outputs, axis=1), cache
