"""Multi-head projections in keras's layout, and the kernel's heads layout.

`keras.layers.MultiHeadAttention` projects inputs `(B, *S, d)` with
`EinsumDense` kernels `(d, H, D)` into `(B, *S, H, D)` and back with an
output kernel `(H, Dv, d)`. `einsum_dense` builds those projections (so
weights load from keras's layer), and `HeadsLayout` moves projected
tensors, masks and biases between that layout and the one of
`keras_attention.kernel`: `(B', H, T, D)`, or `(B', H_kv, G, T, D)` with
grouped-query attention (`G = H / H_kv` query heads per key/value head),
where the axes that are not attention axes join the batch `B'` and the
attention axes are flattened into `T`.
"""

import math
import string

import keras
from keras import ops

from keras_attention import utils


def projection_equation(free_dims, bound_dims, output_dims):
    """EinsumDense equation and bias axes, as keras's MHA builds them."""
    letters = string.ascii_lowercase
    free = letters[:free_dims]
    bound = letters[free_dims : free_dims + bound_dims]
    out = letters[free_dims + bound_dims : free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out


def einsum_dense(rank, bound_dims, output_shape, name, settings, **kwargs):
    """A keras-layout `EinsumDense` for inputs of rank `rank`.

    Args:
        rank: rank of the inputs, e.g. 3 for `(B, T, d)`.
        bound_dims: trailing input axes contracted (1, or 2 for the
            output projection of `(B, T, H, Dv)`).
        output_shape: the trailing output dims, e.g. `(H, D)`.
        name: the sublayer's name (`"query"`, `"attention_output"`, ...).
        settings: dict with `use_bias`, `kernel_initializer`,
            `bias_initializer` (fresh copies are made: a stateless
            initializer would repeat its values), the regularizers and
            constraints, and `dtype`.
        **kwargs: more `EinsumDense` arguments (e.g. `activation`).
    """
    equation, bias_axes = projection_equation(
        rank - bound_dims, bound_dims, len(output_shape)
    )
    settings = dict(settings)
    for key in ("kernel_initializer", "bias_initializer"):
        initializer = keras.initializers.get(settings[key])
        settings[key] = initializer.__class__.from_config(
            initializer.get_config()
        )
    use_bias = settings.pop("use_bias")
    return keras.layers.EinsumDense(
        equation,
        output_shape=[None] * (rank - bound_dims - 1) + list(output_shape),
        bias_axes=bias_axes if use_bias else None,
        name=name,
        **settings,
        **kwargs,
    )


def attention_axes_of(query_shape, value_shape, key_shape, attention_axes):
    """Check the input shapes; the attention axes, non-negative.

    Raises a `ValueError` naming `value`/`key`, `query`/`value` or
    `attention_axes` for shapes keras's layer would refuse.
    """
    if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
        raise ValueError(
            "All dimensions of `value` and `key`, except the last one, "
            f"must be equal. Received: value.shape={tuple(value_shape)}, "
            f"key.shape={tuple(key_shape)}"
        )
    rank = len(query_shape)
    if len(value_shape) != rank:
        raise ValueError(
            "`query` and `value` must have the same rank. Received: "
            f"query.shape={tuple(query_shape)}, "
            f"value.shape={tuple(value_shape)}"
        )
    axes = attention_axes or tuple(range(1, rank - 1))
    axes = tuple(a if a >= 0 else rank + a for a in axes)
    if any(not 0 < a < rank - 1 for a in axes):
        raise ValueError(
            "`attention_axes` must be axes of the inputs other than batch "
            f"and features. Received: attention_axes={axes}, "
            f"query.shape={tuple(query_shape)}"
        )
    return axes


class HeadsLayout:
    """Projections `(B, *S, h, D)` <-> the kernel's heads layout.

    Args:
        num_heads: query heads `H`.
        num_key_value_heads: key/value heads `H_kv`, a divisor of `H`.
        attention_axes: the non-negative attention axes of the inputs.
        rank: rank of the inputs (3 for `(B, T, d)`).
    """

    def __init__(self, num_heads, num_key_value_heads, attention_axes, rank):
        self.num_heads = num_heads
        self.kv_heads = num_key_value_heads
        self.group = num_heads // num_key_value_heads
        self.attention_axes = tuple(attention_axes)
        self.other_axes = tuple(
            a for a in range(1, rank - 1) if a not in attention_axes
        )
        # Without groups the G axis is dropped: 4-D products (and their
        # gradients) are faster than broadcasting 5-D ones.
        self.heads = (
            (num_heads,) if self.group == 1 else (self.kv_heads, self.group)
        )

    def to_heads(self, x):
        """`(B, *S, h, D)` -> `(B', H, T, D)` or `(B', H_kv, h / H_kv, T,
        D)` (for `(B, T, h, D)` this is a transpose)."""
        rank = len(x.shape)
        perm = (0, *self.other_axes, rank - 2, *self.attention_axes)
        x = ops.transpose(x, perm + (rank - 1,))
        shape = ops.shape(x)
        num_axes = len(self.attention_axes)
        length = math.prod(shape[rank - 1 - num_axes : -1])
        heads = shape[rank - 2 - num_axes]
        if self.group == 1:
            return ops.reshape(x, (-1, heads, length, shape[-1]))
        return ops.reshape(
            x, (-1, self.kv_heads, heads // self.kv_heads, length, shape[-1])
        )

    def from_heads(self, x, like):
        """Inverse of `to_heads` for outputs `(B', *heads, Tq, Dv)` ->
        `(B, *S, H, Dv)`; `like` is the projected query `(B, *S, H, D)`."""
        rank = len(like.shape)
        shape = ops.shape(like)
        perm = (0, *self.other_axes, rank - 2, *self.attention_axes)
        x = ops.reshape(x, tuple(shape[a] for a in perm) + (x.shape[-1],))
        inverse = [perm.index(a) for a in range(rank - 1)] + [rank - 1]
        return ops.transpose(x, inverse)

    def weights_shape(self, query_shape, key_shape):
        """keras's score layout `(B, *other, H, *query axes, *key axes)`."""
        other = tuple(query_shape[a] for a in (0, *self.other_axes))
        return (
            other
            + (self.num_heads,)
            + tuple(query_shape[a] for a in self.attention_axes)
            + tuple(key_shape[a] for a in self.attention_axes)
        )

    def keras_weights(self, weights, query, key):
        """Weights of the kernel's layout in keras's score layout."""
        shape = self.weights_shape(ops.shape(query), ops.shape(key))
        return ops.reshape(weights, shape)

    def attention_mask(self, attention_mask, query, key):
        """keras-layout `attention_mask` -> bool, in the heads layout.

        Masks of `(B, Tq, Tk)` (rank-3 inputs, no head axis) are returned as
        they are; `build_mask` adds the head axes. A per-head mask, or a
        mask over several attention axes, is reshaped like `to_heads`.
        `query` and `key` are the projections `(B, *S, h, D)`.
        """
        mask = ops.cast(attention_mask, "bool")
        if len(query.shape) == 4 and len(mask.shape) <= 3:
            return mask
        num_axes = len(self.attention_axes)
        rank = len(self.weights_shape(query.shape, key.shape))
        while len(mask.shape) < rank:  # keras adds the missing head axis
            mask = ops.expand_dims(mask, -2 * num_axes - 1)
        heads = mask.shape[-2 * num_axes - 1]
        shape = list(self.weights_shape(ops.shape(query), ops.shape(key)))
        shape[-2 * num_axes - 1] = heads
        mask = ops.broadcast_to(mask, shape)
        query_length = math.prod(shape[-2 * num_axes : -num_axes])
        key_length = math.prod(shape[-num_axes:])
        return self._split_heads(mask, heads, query_length, key_length)

    def _split_heads(self, x, heads, query_length, key_length):
        """`(B', H or 1, ...)` -> the heads layout's head axes."""
        if self.group == 1:
            return ops.reshape(x, (-1, heads, query_length, key_length))
        if heads == 1:
            return ops.reshape(x, (-1, 1, 1, query_length, key_length))
        return ops.reshape(
            x, (-1, self.kv_heads, self.group, query_length, key_length)
        )

    def bias(self, bias, query, key):
        """`attention_bias` broadcastable to `(B, H, Tq, Tk)` in the heads
        layout (rank-3 inputs only); `query`, `key` are the projections."""
        if bias is None:
            return None
        if len(query.shape) != 4:
            raise ValueError(
                "`attention_bias` needs inputs of rank 3 (B, T, d). "
                f"Received: query.shape={tuple(query.shape)}"
            )
        heads = (self.num_heads,) if len(bias.shape) == 4 else ()
        utils.check_shape(
            "attention_bias",
            bias,
            (query.shape[0], *heads, query.shape[1], key.shape[1]),
            broadcast=True,
        )
        bias = ops.convert_to_tensor(bias)
        while len(bias.shape) < 4:
            bias = ops.expand_dims(bias, -3)
        shape = ops.shape(bias)
        return self._split_heads(bias, bias.shape[1], shape[2], shape[3])
