"""Small helpers every layer shares: argument checks, optional outputs and
the one loop of known length.

Argument checks raise in keras's form: what was expected, then
`Received: name=value`, so the message always names the argument.
"""

import functools
import inspect
import numbers
import random

import keras
import numpy as np
from keras import ops


def serialize(obj):
    """`obj`'s config, for a parent layer's config (`None` stays `None`).

    Keras's `serialize_keras_object`, without the build config (the parent
    builds the child on its own shapes), and as a copy Keras does not hold.
    While `save` and `load_model` run, Keras records each object it
    serializes by `id()`: a later object with the same `id()` is marked as
    the same object (`shared_object_id`) in both configs, and loading hands
    the first object back for the second. A temporary's `id()` goes to the
    next object made, so a kept config once named an unrelated object (a
    `SoftCap` came back as a score layer, at random). The copy carries no
    such mark, then or later.
    """
    config = _unshared(keras.saving.serialize_keras_object(obj))
    if isinstance(config, dict):  # our copy: safe to edit
        config.pop("build_config", None)
    return config


def _unshared(config):
    """A copy of a config's dicts and lists without `shared_object_id`."""
    if isinstance(config, dict):
        return {
            key: _unshared(value)
            for key, value in config.items()
            if key != "shared_object_id"
        }
    if isinstance(config, (list, tuple)):
        return type(config)(_unshared(value) for value in config)
    return config


def _reject(name, value, expected):
    raise ValueError(
        f"Invalid value for argument `{name}`: expected {expected}. "
        f"Received: {name}={value!r}"
    )


def check_number(
    name,
    value,
    low=None,
    high=None,
    integer=False,
    allow_none=False,
    include_low=False,
    include_high=True,
):
    """Raise a `ValueError` naming `name` unless `value` is a finite number
    in the interval from `low` to `high` (open or closed ends as asked).

    Booleans, strings, NaN and infinities are never numbers here.
    """
    if value is None and allow_none:
        return
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    ok = ok and -float("inf") < value < float("inf")
    if ok and low is not None:
        ok = value >= low if include_low else value > low
    if ok and high is not None:
        ok = value <= high if include_high else value < high
    if not ok:
        left = "[" if include_low else "("
        right = "]" if include_high and high is not None else ")"
        interval = f"{left}{'-inf' if low is None else low}, "
        interval += f"{'inf' if high is None else high}{right}"
        expected = f"{'an integer' if integer else 'a number'} in {interval}"
        if low == 0 and high is None and not include_low:
            expected = f"a positive {'integer' if integer else 'number'}"
        _reject(name, value, expected + (" or None" if allow_none else ""))


def check_positive_int(name, value, allow_none=False):
    """Raise a `ValueError` unless `value` is an int `> 0` (or `None`)."""
    check_number(name, value, 0, integer=True, allow_none=allow_none)


def check_positive_number(name, value, allow_none=False):
    """Raise a `ValueError` unless `value` is a finite number `> 0`."""
    check_number(name, value, 0, allow_none=allow_none)


def check_rate(name, value):
    """Raise a `ValueError` unless `value` is a number in `[0, 1)`."""
    check_number(name, value, 0, 1, include_low=True, include_high=False)


def check_choice(name, value, choices):
    """Raise a `ValueError` unless `value` is one of `choices`."""
    if not any(
        value is c or (type(value) is type(c) and value == c) for c in choices
    ):
        _reject(name, value, f"one of {tuple(choices)}")


def check_shape(name, tensor, expected, broadcast=False):
    """Raise a `ValueError` unless `tensor`'s shape matches `expected`.

    `expected` is a tuple with `None` for "any size"; a dimension unknown in
    the tensor (symbolic) passes. With `broadcast`, a size of 1 passes too,
    and a tensor of lower rank is compared on its last dimensions.
    `tensor=None` passes; a tuple or list is taken as a shape.
    """
    if tensor is None:
        return
    shape = tuple(tensor if isinstance(tensor, (tuple, list)) else tensor.shape)
    rank_ok = (
        len(shape) <= len(expected)
        if broadcast
        else (len(shape) == len(expected))
    )
    pairs = zip(shape[::-1], expected[::-1])
    if rank_ok and all(
        size is None
        or want is None
        or size == want
        or (broadcast and size == 1)
        for size, want in pairs
    ):
        return
    shown = tuple("?" if want is None else want for want in expected)
    raise ValueError(
        f"Invalid shape for argument `{name}`: expected "
        f"{'a shape broadcastable to ' if broadcast else ''}{shown}. "
        f"Received: {name}.shape={shape}"
    )


def known_values(x):
    """`x` as a NumPy array when its values are known now, else `None`.

    Values are known eagerly (NumPy, eager tensors); inside a traced
    function (`tf.function`, `jax.jit`) or for a symbolic `KerasTensor`
    they are not, and checks of values are left to the eager calls.
    """
    if isinstance(x, (np.ndarray, list, tuple, numbers.Number)):
        return np.asarray(x)
    if isinstance(x, keras.KerasTensor):
        return None
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # a symbolic tensor: values unknown while tracing
        return None


def check_token_ids(name, ids, vocab_size=None):
    """Raise unless `ids` are integer token ids in `[0, vocab_size)`.

    Checked when the values are known (eager calls, `generate`): a float id
    (`1.7`) or a negative one would otherwise be cast or wrap silently, and
    an id past the vocabulary fails deep in a gather.
    """
    values = known_values(ids)
    if values is None or not values.size:
        return  # traced: Keras casts a float input to the int32 `Input`
    if values.dtype.kind in "fc":
        # Whole numbers in a float array (`np.ones`) are ids; 1.7 is not.
        whole = np.isfinite(values) & (values == np.round(values))
        if not np.all(whole):
            first = values[~whole].ravel()[0]
            _reject(name, f"<ids such as {first}>", "integer token ids")
    low, high = values.min(), values.max()
    if low < 0 or (vocab_size is not None and high >= vocab_size):
        bound = "" if vocab_size is None else f" < {vocab_size}"
        raise ValueError(
            f"Invalid value for argument `{name}`: expected token ids >= 0"
            f"{bound} (the vocabulary size). Received: ids from {low} to "
            f"{high}"
        )


def dtype_policy(dtype=None):
    """The `DTypePolicy` of `dtype`, or the global policy for `None`.

    Models resolve it once when they are built and keep it in their config,
    so that a model built under `mixed_float16` reloads as one.
    """
    if dtype is None:
        return keras.config.dtype_policy()
    return keras.dtype_policies.get(dtype)


def cast_inputs(layer, *tensors):
    """`tensors` (`None`s kept) with floats in `layer.compute_dtype`: Keras'
    autocast, for the decoder layers that turn it off so that a float32
    decoding state (a linear attention's sums) passes through them whole
    under mixed precision."""
    return tuple(
        ops.cast(x, layer.compute_dtype)
        if x is not None
        and keras.backend.is_float_dtype(
            keras.backend.standardize_dtype(x.dtype)
        )
        else x
        for x in tensors
    )


def pack_outputs(*outputs):
    """The outputs that are not `None`: one value, or a tuple of them.

    Layers return their output, then optional extras (weights, cache, state)
    only when asked for: `pack_outputs(output, weights_or_none, cache)`.
    """
    kept = tuple(x for x in outputs if x is not None)
    return kept[0] if len(kept) == 1 else kept


def fori_loop(length, body, init):
    """`carry = body(index, carry)` for `index` in `0 .. length - 1`.

    A loop of known length that every backend can differentiate: Keras's
    `fori_loop` is a `lax.scan` on JAX (whose `while_loop` has no reverse
    mode), but on TensorFlow its `while_loop` needs `maximum_iterations`
    for the gradient to compile under XLA (as Keras's own RNN loop does).
    The one place in the package that picks a loop per backend.

    Args:
        length: int or scalar int tensor, the number of iterations (static
            on JAX, as every JAX shape is).
        body: `(index, carry) -> carry`.
        init: the initial carry, any nest of tensors.

    Returns:
        The final carry.
    """
    if keras.config.backend() == "tensorflow":
        return ops.while_loop(
            lambda index, carry: index < length,
            lambda index, carry: (index + 1, body(index, carry)),
            (0, init),
            maximum_iterations=length,
        )[1]
    return ops.fori_loop(0, length, body, init)


def argmax(x):
    """Index of the largest value on the last axis (the first on a tie).

    `max`, `equal`, `where` and `min` rather than `ops.argmax`: keras's
    TensorFlow `argmax` lowers to bitwise ops (its negative-zero fix) that
    LiteRT has no builtin for, and this converts everywhere
    (`keras_attention.export.export_generator`).
    """
    x = ops.convert_to_tensor(x)
    size = ops.shape(x)[-1]
    best = ops.equal(x, ops.max(x, axis=-1, keepdims=True))
    index = ops.min(ops.where(best, ops.arange(size, dtype="int32"), size), -1)
    return ops.minimum(index, size - 1)  # a NaN row: the last index


def prefers_fused_attention():
    """Whether the backend's fused `ops.dot_product_attention` is faster.

    Measured by `benchmarks/backends.py` on CPU: PyTorch's
    scaled-dot-product kernel beats the einsum-softmax-einsum path
    (forward+backward 1.03 vs 1.20 of keras's layer); on TensorFlow and JAX
    the plain path is faster than their fused op (0.93 and 0.86 vs 0.99 and
    1.01). The other place, with `fori_loop`, that looks at the backend.
    """
    return keras.config.backend() == "torch"


# === Checks shared by the attention layers, blocks and models ===


def check_heads(num_heads, num_key_value_heads=None):
    """Raise a `ValueError` unless `num_key_value_heads` divides
    `num_heads` (both positive ints; `None` means as many as `num_heads`)."""
    check_positive_int("num_heads", num_heads)
    check_positive_int(
        "num_key_value_heads", num_key_value_heads, allow_none=True
    )
    if num_heads % (num_key_value_heads or num_heads):
        raise ValueError(
            "`num_heads` must be a multiple of `num_key_value_heads`. "
            f"Received: num_heads={num_heads}, "
            f"num_key_value_heads={num_key_value_heads}"
        )


def check_even(name, value, why="rotary embedding rotates pairs"):
    """Raise a `ValueError` naming `name` unless the int `value` is even."""
    if value % 2:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected an even size "
            f"({why}). Received: {name}={value}"
        )


def check_no_unknown_kwargs(kwargs, allowed=("name", "trainable", "dtype")):
    """Raise a `ValueError` naming every keyword argument not in `allowed`.

    Functional `keras.Model.__init__` takes `**kwargs` quietly, so a model
    whose constructor passes its leftovers on would ignore a misspelt
    `dropuot=0.3`; models call this first.
    """
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown keyword argument(s): {', '.join(unknown)}. "
            f"Received: {', '.join(f'{k}={kwargs[k]!r}' for k in unknown)}"
        )


@functools.cache
def _keywords(function):
    """The keyword names `function` takes, or `None` if it takes `**any`."""
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters)


def call_with_context(method, *args, **context):
    """`method(*args, **context)` with only the context it accepts.

    Context keywords (`num_heads`, `segment_ids`) reach a modifier's
    `call`, `bias` or gradient only when its signature names them or takes
    `**context`, so a modifier written with DESIGN's plain signature
    `call(q_idx, kv_idx, head)` works too.
    """
    names = _keywords(getattr(method, "__func__", method))
    if names is not None:
        context = {k: v for k, v in context.items() if k in names}
    return method(*args, **context)


def draw_seed(seed=None):
    """`seed` checked, or a fresh one drawn from Python's `random`.

    The one place a sampling seed is drawn (`keras.utils.set_random_seed`
    makes the draws reproducible). A Python or NumPy scalar must be an
    int32; a tensor seed (traced) passes as is.

    Returns:
        `seed`, or an int in `[0, 2**31)` when `seed` is `None`.
    """
    if seed is None:
        return random.randrange(1 << 31)
    if isinstance(seed, (numbers.Number, str)):  # the noise hashes an int32
        low, high = -(1 << 31), (1 << 31) - 1
        check_number("seed", seed, low, high, integer=True, include_low=True)
    return seed
