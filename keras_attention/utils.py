"""Small helpers every layer shares: argument checks, optional outputs and
the one loop of known length.

Argument checks raise in keras's form: what was expected, then
`Received: name=value`, so the message always names the argument.
"""

import numbers

import keras
from keras import ops


def check_positive_int(name, value, allow_none=False):
    """Raise a `ValueError` unless `value` is an int `> 0` (or `None`)."""
    if value is None and allow_none:
        return
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or value <= 0
    ):
        expected = "a positive integer" + (" or `None`" if allow_none else "")
        raise ValueError(
            f"`{name}` must be {expected}. Received: {name}={value!r}"
        )


def check_positive_number(name, value, allow_none=False):
    """Raise a `ValueError` unless `value` is a finite number `> 0`."""
    if value is None and allow_none:
        return
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not 0 < value < float("inf")
    ):
        expected = "a positive number" + (" or `None`" if allow_none else "")
        raise ValueError(
            f"`{name}` must be {expected}. Received: {name}={value!r}"
        )


def check_rate(name, value):
    """Raise a `ValueError` unless `value` is a number in `[0, 1)`."""
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not 0.0 <= value < 1.0
    ):
        raise ValueError(
            f"`{name}` must be a number in [0, 1). Received: {name}={value!r}"
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
