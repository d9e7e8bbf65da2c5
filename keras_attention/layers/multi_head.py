"""Multi-head attention: a drop-in for `keras.layers.MultiHeadAttention`."""

import math
import string
from typing import NamedTuple

import keras
from keras import ops

from keras_attention import chunked
from keras_attention import mods
from keras_attention import ops as attention_ops
from keras_attention import scores
from keras_attention import utils
from keras_attention.constants import mask_value
from keras_attention.layers.attention import check_call_shapes
from keras_attention.layers.attention import hide_unseen_inputs
from keras_attention.layers.dropout import Dropout


def _projection(free_dims, bound_dims, output_dims):
    """EinsumDense equation and bias axes, as keras's MHA builds them."""
    letters = string.ascii_lowercase
    free = letters[:free_dims]
    bound = letters[free_dims : free_dims + bound_dims]
    out = letters[free_dims + bound_dims : free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out


class _Call(NamedTuple):
    """What one call adds to the layer's settings, for the attention step."""

    use_causal_mask: bool
    offset: object  # position of the first query (a cache index)
    return_weights: bool
    training: object
    bias: object  # `attention_bias` in the heads layout, or None
    context: dict  # for the modifiers: `segment_ids`


def _heads_to_4d(tensors):
    """Masks/biases of the heads layout `(B', H_kv, G, Tq, Tk)` (or lower
    rank) as `(B, H or 1, Tq, Tk)`-broadcastable, for the fused kernel."""
    result = []
    for x in tensors:
        if x is not None and len(x.shape) == 5:
            shape = ops.shape(x)
            x = ops.reshape(x, (shape[0], shape[1] * shape[2], *shape[3:]))
        result.append(x)
    return result


def _as_tuple(name, x):
    """An int or a sequence of ints as a tuple; `None` stays `None`."""
    if x is None:
        return None
    x = (x,) if isinstance(x, int) else x
    if not isinstance(x, (tuple, list)) or not all(
        isinstance(i, int) for i in x
    ):
        raise ValueError(
            f"Invalid `{name}`: expected an int or a tuple/list of ints. "
            f"Received: {name}={x!r}"
        )
    return tuple(x)


def _check_arguments(
    num_heads,
    key_dim,
    value_dim,
    dropout,
    sliding_window,
    num_key_value_heads,
    rotary_max_wavelength,
    chunk_size,
):
    """Raise a `ValueError` naming the first bad constructor argument."""
    utils.check_positive_int("num_heads", num_heads)
    utils.check_positive_int("key_dim", key_dim)
    for name, value in (
        ("value_dim", value_dim),
        ("sliding_window", sliding_window),
        ("num_key_value_heads", num_key_value_heads),
        ("chunk_size", chunk_size),
    ):
        utils.check_positive_int(name, value, allow_none=True)
    utils.check_rate("dropout", dropout)
    if num_heads % (num_key_value_heads or num_heads):
        raise ValueError(
            "`num_heads` must be a multiple of `num_key_value_heads`. "
            f"Received: num_heads={num_heads}, "
            f"num_key_value_heads={num_key_value_heads}"
        )
    if rotary_max_wavelength is not None:
        utils.check_positive_number(
            "rotary_max_wavelength", rotary_max_wavelength
        )
        if key_dim % 2:
            raise ValueError(
                "Rotary embedding needs an even `key_dim`. "
                f"Received: key_dim={key_dim}"
            )


@keras.saving.register_keras_serializable(package="keras_attention")
class MultiHeadAttention(keras.layers.Layer):
    r"""Multi-head attention, a drop-in for `keras.layers.MultiHeadAttention`.

    $\mathrm{head}_h = \operatorname{Attention}(x_q W_h^Q, x_k W_h^K,
    x_v W_h^V)$ for $h = 1, \dots, H$,
    $\mathrm{output} = \operatorname{concat}_h(\mathrm{head}_h) W^O$, with the
    default score $\operatorname{softmax}(q k^\top / \sqrt{D})\, v$
    (Vaswani et al.).

    Same constructor arguments, call signature and weights as keras's layer
    (sublayers `"query"`, `"key"`, `"value"`, `"attention_output"`, and
    `"gate"` with `use_gate`), so `layer.set_weights(keras_mha.get_weights())`
    reproduces its outputs and attention scores. One difference, by design: a
    query whose keys are all masked gets zero weights and a zero output
    (keras gives it uniform weights), so the two agree on every query that
    sees at least one key. An explicit `query_mask` is honoured (keras only
    reads the query's Keras mask); `flash_attention` is accepted and ignored
    (use `chunk_size`).

    Beyond keras:

    - `score`: any scoring function of `keras_attention.scores`.
    - Grouped-query attention: `num_key_value_heads` key/value heads, each
      shared by `num_heads / num_key_value_heads` query heads (1 = multi-query
      attention). Key/value kernels are `(d, H_kv, D)`.
    - Rotary position embedding of queries and keys
      (`rotary_max_wavelength`).
    - `chunk_size`: keys are visited in blocks with an online softmax
      (`keras_attention.ops.chunked_attention`), so memory is O(T · chunk)
      instead of O(T²), for the forward and (with a dot-product score) the
      backward pass. Used unless attention scores are returned, dropout is
      active or the mask is per head.
    - Incremental decoding: `call(..., cache, cache_update_index)` writes the
      new keys/values into a `(B, 2, T_max, H_kv, D)` cache (the keras_hub
      `CachedMultiHeadAttention` layout) and returns it. With
      `use_causal_mask=True` the queries sit at `cache_update_index`, so the
      unfilled end of the cache is never seen. With a cache and no index the
      cache holds precomputed keys/values (cross-attention).

    Args:
        num_heads: number of query heads `H`.
        key_dim: size `D` of each query/key head.
        value_dim: size of each value head. Defaults to `key_dim`.
        dropout: dropout rate on the attention weights. Defaults to `0.0`.
        use_bias: whether the projections have biases. Defaults to `True`.
        output_shape: last dims of the output; defaults to the query's last
            dim.
        attention_axes: axes attention runs over (keras semantics). Defaults
            to all axes but batch, heads and features.
        sliding_window: optional int: query $i$ sees keys $j$ with
            $\lvert i - j \rvert < \mathtt{sliding\_window}$. Defaults to
            `None`.
        flash_attention: accepted for compatibility, ignored.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint,
        bias_constraint: as in `keras.layers.EinsumDense`, for every
            projection.
        use_gate: whether a sigmoid gate of the query multiplies the heads
            (keras's gated attention). Defaults to `False`.
        seed: seed of the dropout. Defaults to `None`.
        score: a score name, config dict or score layer, applied per head.
            Defaults to `"scaled_dot"` ($1/\sqrt{\mathtt{key\_dim}}$, as
            keras).
        num_key_value_heads: number of key/value heads `H_kv`, a divisor of
            `num_heads`. Defaults to `num_heads`.
        rotary_max_wavelength: if set, RoPE with this wavelength is applied to
            queries and keys. Defaults to `None`.
        chunk_size: if set, keys per block of the memory-efficient path.
            Defaults to `None`.
        score_mod: optional `keras_attention.mods.ScoreMod` (ALiBi, T5
            bias, soft-cap, ...) applied to every head's logits. Defaults
            to `None`.
        mask_mod: optional `keras_attention.mods.MaskMod` (causal, sliding
            window, prefix, documents, ...). Defaults to `None`.

    Call arguments:
        query: `(B, Tq, dq)`.
        value: `(B, Tk, dv)`.
        key: optional `(B, Tk, dk)`; `value` is used when omitted.
        query_mask: optional bool `(B, Tq)`; filled from Keras masks.
        value_mask: optional bool `(B, Tk)`; filled from Keras masks.
        key_mask: optional bool `(B, Tk)`; filled from Keras masks.
        attention_mask: optional bool `(B, Tq, Tk)` (or `(B, H, Tq, Tk)`),
            `True` = may attend.
        return_attention_scores: whether to also return the weights.
        training: whether dropout is active.
        use_causal_mask: whether query $i$ only sees keys $j \le i$.
        cache: optional `(B, 2, T_max, H_kv, D)` key/value cache.
        cache_update_index: int or scalar tensor, where the new keys go.
        attention_bias: optional float tensor broadcastable to
            `(B, H, Tq, Tk)`, added to the logits (after `score_mod`).
        segment_ids: optional int `(B, T)` for a `mods.DocumentMask`.

    Returns:
        The output `(B, Tq, dq)` (or `output_shape`), then the weights
        `(B, H, Tq, Tk)` if `return_attention_scores`, then the updated
        cache if `cache` was passed.

    Examples:
        >>> import numpy as np
        >>> layer = MultiHeadAttention(num_heads=4, key_dim=8,
        ...                            num_key_value_heads=2)
        >>> x = np.ones((2, 5, 16))
        >>> output, weights = layer(x, x, return_attention_scores=True)
        >>> tuple(output.shape), tuple(weights.shape)
        ((2, 5, 16), (2, 4, 5, 5))

    Reference:
        Vaswani et al., 2017, "Attention Is All You Need"; Shazeer, 2019
        (multi-query); Ainslie et al., 2023 (grouped-query); Su et al., 2021
        (RoFormer); Rabe & Staats, 2021, "Self-attention Does Not Need O(n²)
        Memory".
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        attention_axes=None,
        sliding_window=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate=False,
        seed=None,
        score="scaled_dot",
        num_key_value_heads=None,
        rotary_max_wavelength=None,
        chunk_size=None,
        score_mod=None,
        mask_mod=None,
        **kwargs,
    ):
        _check_arguments(
            num_heads,
            key_dim,
            value_dim,
            dropout,
            sliding_window,
            num_key_value_heads,
            rotary_max_wavelength,
            chunk_size,
        )
        super().__init__(**kwargs)
        self.supports_masking = True
        self.score = scores.get(score, dtype=self.dtype_policy)
        self._num_heads = num_heads
        self._key_dim = key_dim
        self._value_dim = value_dim or key_dim
        self._dropout = dropout
        self._use_bias = use_bias
        self._output_shape = _as_tuple("output_shape", output_shape) or None
        self._attention_axes = _as_tuple("attention_axes", attention_axes)
        self._sliding_window = sliding_window
        self.flash_attention = flash_attention
        self._initializers = (
            keras.initializers.get(kernel_initializer),
            keras.initializers.get(bias_initializer),
        )
        self._regularizers = {
            "kernel_regularizer": keras.regularizers.get(kernel_regularizer),
            "bias_regularizer": keras.regularizers.get(bias_regularizer),
            "activity_regularizer": keras.regularizers.get(
                activity_regularizer
            ),
            "kernel_constraint": keras.constraints.get(kernel_constraint),
            "bias_constraint": keras.constraints.get(bias_constraint),
        }
        self._use_gate = use_gate
        self.seed = seed
        self.num_key_value_heads = num_key_value_heads or num_heads
        self.rotary_max_wavelength = rotary_max_wavelength
        self.chunk_size = chunk_size
        self.score_mod = mods.get(score_mod, mods.ScoreMod)
        self.mask_mod = mods.get(mask_mod, mods.MaskMod)
        self._dropout_layer = Dropout(
            dropout, seed=seed, dtype=self.dtype_policy
        )

    num_heads = property(lambda self: self._num_heads)
    sliding_window = property(lambda self: self._sliding_window)
    key_dim = property(lambda self: self._key_dim)
    value_dim = property(lambda self: self._value_dim)
    dropout = property(lambda self: self._dropout)
    use_bias = property(lambda self: self._use_bias)
    attention_axes = property(lambda self: self._attention_axes)
    query_dense = property(lambda self: self._query_dense)
    key_dense = property(lambda self: self._key_dense)
    value_dense = property(lambda self: self._value_dense)
    output_dense = property(lambda self: self._output_dense)

    def _dense(self, rank, bound_dims, output_shape, name, activation=None):
        """A keras-layout EinsumDense for inputs of rank `rank`."""
        equation, bias_axes = _projection(
            rank - bound_dims, bound_dims, len(output_shape)
        )
        kernel_initializer, bias_initializer = (
            initializer.__class__.from_config(initializer.get_config())
            for initializer in self._initializers
        )  # fresh copies: stateless initializers would repeat values
        return keras.layers.EinsumDense(
            equation,
            output_shape=[None] * (rank - bound_dims - 1) + list(output_shape),
            bias_axes=bias_axes if self._use_bias else None,
            activation=activation,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            name=name,
            dtype=self.dtype_policy,
            **self._regularizers,
        )

    def _attention_axes_of(self, query_shape, value_shape, key_shape):
        """Check the input shapes; the attention axes, non-negative."""
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, "
                f"must be equal. Received: value.shape={tuple(value_shape)}, "
                f"key.shape={tuple(key_shape)}"
            )
        rank = len(query_shape)  # the projections add a head axis
        if len(value_shape) != rank:
            raise ValueError(
                "`query` and `value` must have the same rank. Received: "
                f"query.shape={tuple(query_shape)}, "
                f"value.shape={tuple(value_shape)}"
            )
        if rank != 3 and (self.rotary_max_wavelength or self.chunk_size):
            raise ValueError(
                "`rotary_max_wavelength` and `chunk_size` need inputs of rank "
                f"3 (B, T, d). Received: query.shape={tuple(query_shape)}"
            )
        axes = self._attention_axes or tuple(range(1, rank - 1))
        axes = tuple(a if a >= 0 else rank + a for a in axes)
        if any(not 0 < a < rank - 1 for a in axes):
            raise ValueError(
                "`attention_axes` must be axes of the inputs other than batch "
                f"and features. Received: attention_axes={axes}, "
                f"query.shape={tuple(query_shape)}"
            )
        return axes

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        axes = self._attention_axes_of(query_shape, value_shape, key_shape)
        rank = len(query_shape)
        self._attention_axes = axes
        self._other_axes = tuple(a for a in range(1, rank - 1) if a not in axes)
        heads, kv_heads = self._num_heads, self.num_key_value_heads
        self._query_dense = self._dense(
            rank, 1, (heads, self._key_dim), "query"
        )
        self._query_dense.build(query_shape)
        self._key_dense = self._dense(rank, 1, (kv_heads, self._key_dim), "key")
        self._key_dense.build(key_shape)
        if self._use_gate:
            self._gate_dense = self._dense(
                rank, 1, (heads, self._value_dim), "gate", "sigmoid"
            )
            self._gate_dense.build(query_shape)
        self._value_dense = self._dense(
            rank, 1, (kv_heads, self._value_dim), "value"
        )
        self._value_dense.build(value_shape)
        self._output_dense = self._dense(
            rank + 1,
            2,
            self._output_shape or (query_shape[-1],),
            "attention_output",
        )
        self._output_dense.build(
            tuple(query_shape[:-1]) + (heads, self._value_dim)
        )
        group = self._group = heads // kv_heads
        if self.score_mod is not None and not self.score_mod.built:
            self.score_mod.build((heads,))
        if not self.score.built:
            self.score.build(
                (None, kv_heads, group, None, self._key_dim),
                (None, kv_heads, 1, None, self._key_dim),
            )
        self.built = True

    def _to_heads(self, x):
        """`(B, *S, h, D)` -> `(B', H_kv, h / H_kv, T, D)`.

        Axes that are not attention axes join the batch `B'`; attention axes
        are flattened into `T` (for `(B, T, h, D)` this is a transpose).
        """
        rank = len(x.shape)
        perm = (0, *self._other_axes, rank - 2, *self._attention_axes)
        x = ops.transpose(x, perm + (rank - 1,))
        shape = ops.shape(x)
        length = math.prod(shape[rank - 1 - len(self._attention_axes) : -1])
        kv_heads = self.num_key_value_heads
        return ops.reshape(
            x,
            (
                -1,
                kv_heads,
                shape[rank - 2 - len(self._attention_axes)] // kv_heads,
                length,
                shape[-1],
            ),
        )

    def _from_heads(self, x, like):
        """Inverse of `_to_heads`: `(B', H_kv, G, Tq, Dv)` -> `(B, *S, H, Dv)`.

        `like` is the projected query `(B, *S, H, D)`.
        """
        rank = len(like.shape)
        shape = ops.shape(like)
        perm = (0, *self._other_axes, rank - 2, *self._attention_axes)
        x = ops.reshape(x, tuple(shape[a] for a in perm) + (x.shape[-1],))
        inverse = [perm.index(a) for a in range(rank - 1)] + [rank - 1]
        return ops.transpose(x, inverse)

    def _weights_shape(self, query_shape, key_shape):
        """keras's score layout `(B, *other, H, *query axes, *key axes)`."""
        other = tuple(query_shape[a] for a in (0, *self._other_axes))
        return (
            other
            + (self._num_heads,)
            + tuple(query_shape[a] for a in self._attention_axes)
            + tuple(key_shape[a] for a in self._attention_axes)
        )

    def _heads_attention_mask(self, attention_mask, query, key):
        """keras-layout `attention_mask` -> bool `(B', H_kv?, G?, Tq, Tk)`.

        Masks of `(B, Tq, Tk)` (rank-3 inputs, no head axis) are returned as
        they are; `build_mask` adds the head axes. A per-head mask, or a mask
        over several attention axes, is reshaped into the heads layout of
        `_to_heads`. `query` and `key` are the projections `(B, *S, h, D)`.
        """
        mask = ops.cast(attention_mask, "bool")
        if len(query.shape) == 4 and len(mask.shape) <= 3:
            return mask
        num_axes = len(self._attention_axes)
        rank = len(self._weights_shape(query.shape, key.shape))
        while len(mask.shape) < rank:  # keras adds the missing head axis
            mask = ops.expand_dims(mask, -2 * num_axes - 1)
        heads = mask.shape[-2 * num_axes - 1]
        shape = list(self._weights_shape(ops.shape(query), ops.shape(key)))
        shape[-2 * num_axes - 1] = heads
        mask = ops.broadcast_to(mask, shape)
        group = 1 if heads == 1 else self._num_heads // self.num_key_value_heads
        kv_heads = 1 if heads == 1 else self.num_key_value_heads
        query_length = math.prod(shape[-2 * num_axes : -num_axes])
        key_length = math.prod(shape[-num_axes:])
        return ops.reshape(
            mask, (-1, kv_heads, group, query_length, key_length)
        )

    def _rotate(self, x, offset):
        """RoPE on `(B, T, h, D)` with positions `offset + 0..T-1`."""
        positions = ops.arange(ops.shape(x)[1]) + offset
        return attention_ops.rotary_embedding(
            x, ops.expand_dims(positions, -1), self.rotary_max_wavelength
        )

    def _check_cache(self, query, cache, index):
        """Raise a `ValueError` for a cache or index that cannot be used."""
        if cache is None:
            if index is not None:
                raise ValueError(
                    "`cache_update_index` needs a `cache`. Received: "
                    f"cache=None, cache_update_index={index}"
                )
            return
        expected = (query.shape[0], 2, None, self.num_key_value_heads)
        utils.check_shape("cache", cache, expected + (self._key_dim,))
        if isinstance(index, int) and not isinstance(index, bool):
            length, new = cache.shape[2], query.shape[1]
            if index < 0 or None not in (length, new) and index + new > length:
                raise ValueError(
                    "Invalid value for argument `cache_update_index`: the "
                    f"{new} new token(s) must fit in the cache of length "
                    f"{length}. Received: cache_update_index={index}"
                )

    def _check_cacheable(self):
        if self._key_dim != self._value_dim:
            raise ValueError(
                "A key/value cache needs `value_dim == key_dim`. Received: "
                f"key_dim={self._key_dim}, value_dim={self._value_dim}"
            )

    def _update_cache(self, cache, key, value, index):
        """Write `key`, `value` `(B, T, H_kv, D)` into `cache` at `index`."""
        # One write into the whole cache: each copy of it costs a pass over
        # (B, 2, T_max, H_kv, D), the bulk of a decoding step's memory work.
        update = ops.cast(ops.stack((key, value), axis=1), cache.dtype)
        if key.shape[1] == 1:
            # One token (a decoding step): a `where` against its position
            # is one pass, faster on CPU than a dynamic-update-slice copy.
            length = ops.shape(cache)[2]
            position = ops.equal(ops.arange(length), index)
            position = ops.reshape(position, (1, 1, length, 1, 1))
            cache = ops.where(position, update, cache)
        else:
            cache = ops.slice_update(cache, [0, 0, index, 0, 0], update)
        return cache[:, 0], cache[:, 1], cache

    def _project_key_value(self, key, value, offset):
        """`(B, Tk, d)` -> keys (rotated) and values `(B, Tk, H_kv, D)`."""
        projected_key = self._key_dense(key)
        if self.rotary_max_wavelength is not None:
            projected_key = self._rotate(projected_key, offset)
        return projected_key, self._value_dense(value)

    def compute_cache(self, value, key=None):
        """Keys and values of a fixed sequence, for repeated queries.

        For cross-attention while decoding: project the source once, then
        pass the result as `cache` (with no `cache_update_index`) at every
        step instead of projecting it again.

        Args:
            value: `(B, Tk, dv)`.
            key: optional `(B, Tk, dk)`; `value` is used when omitted.

        Returns:
            `(B, 2, Tk, H_kv, D)`: projected (and rotated) keys, then values.
        """
        self._check_cacheable()
        key = value if key is None else key
        key, value = map(attention_ops.without_mask, (key, value))
        return ops.stack(self._project_key_value(key, value, 0), axis=1)

    def _project(self, query, key, value, cache, cache_update_index):
        """Projections `(B, *S, h, D)` of the inputs, and the new cache.

        With a cache and an index the new keys/values are written into it
        and the whole cache is attended; with a cache and no index the
        cache holds precomputed (rotated) keys/values.
        """
        offset = 0 if cache_update_index is None else cache_update_index
        projected_query = self._query_dense(query)
        if self.rotary_max_wavelength is not None:
            projected_query = self._rotate(projected_query, offset)
        if cache is not None and cache_update_index is None:
            return projected_query, cache[:, 0], cache[:, 1], cache
        projected_key, projected_value = self._project_key_value(
            key, value, offset
        )
        if cache is not None:
            self._check_cacheable()
            projected_key, projected_value, cache = self._update_cache(
                cache, projected_key, projected_value, cache_update_index
            )
        return projected_query, projected_key, projected_value, cache

    def _heads_bias(self, bias, query, key):
        """`attention_bias` `(B, H, Tq, Tk)`-broadcastable in the heads
        layout `(B, H_kv or 1, G or 1, Tq, Tk)` (rank-3 inputs only)."""
        if bias is None:
            return None
        if len(query.shape) != 4:
            raise ValueError(
                "`attention_bias` needs inputs of rank 3 (B, T, d). "
                f"Received: query.shape={tuple(query.shape)}"
            )
        heads = (self._num_heads,) if len(bias.shape) == 4 else ()
        utils.check_shape(
            "attention_bias",
            bias,
            (query.shape[0], *heads, query.shape[1], key.shape[1]),
            broadcast=True,
        )
        bias = ops.convert_to_tensor(bias)
        while len(bias.shape) < 4:
            bias = ops.expand_dims(bias, -3)
        if bias.shape[1] == 1:
            return ops.expand_dims(bias, 1)  # (B, 1, 1, Tq, Tk)
        shape = ops.shape(bias)
        return ops.reshape(
            bias,
            (shape[0], self.num_key_value_heads, self._group, *shape[2:]),
        )

    def _masks(self, query_mask, key_mask, attention_mask, query, key):
        """`(query_mask, key_mask, attention_mask)` for `build_mask`."""
        if len(query.shape) != 4 and (
            query_mask is not None or key_mask is not None
        ):
            raise ValueError(
                "`query_mask`, `value_mask` and `key_mask` need inputs of "
                f"rank 3 (B, T, d). Received: query.shape={query.shape}"
            )
        if attention_mask is not None:
            attention_mask = self._heads_attention_mask(
                attention_mask, query, key
            )
        return query_mask, key_mask, attention_mask

    def _dense_attention(self, q, k, v, mask, score, dropout, call):
        """Softmax attention with the full `(Tq, Tk)` weights."""
        bias, heads = call.bias, (self.num_key_value_heads, self._group)
        if self.num_key_value_heads == self._num_heads:
            # No groups: drop the G axis; 4-D products (and their
            # gradients) are faster than broadcasting 5-D ones.
            q, k, v = (ops.squeeze(x, 2) for x in (q, k, v))
            mask, bias = (
                None if x is None else ops.squeeze(x, 2) for x in (mask, bias)
            )  # (B', 1 or H, Tq or 1, Tk)
            heads = (self._num_heads,)
        logits = scores.dot_logits(q, k) if score is None else score(q, k)
        logits = attention_ops.modify_scores(
            logits, self.score_mod, call.offset, 0, heads, call.context
        )
        if bias is not None:
            logits = logits + ops.cast(bias, logits.dtype)
        return attention_ops.attend(logits, v, mask, dropout, call.training)

    def _fusable(self, scale, query, use_dropout, call):
        """Whether the backend's fused `dot_product_attention` runs (where
        it is the faster one, see `utils.prefers_fused_attention`)."""
        return (
            utils.prefers_fused_attention()
            and scale is not None
            and not (call.return_weights or use_dropout or self.chunk_size)
            and len(query.shape) == 4  # (B, T, H, D): rank-3 inputs
            and self._value_dim == self._key_dim
            and self.num_key_value_heads == self._num_heads  # not GQA
            and (self.score_mod is None or self.score_mod.additive)
            # float16 logits can overflow: ours are computed in float32.
            and keras.backend.standardize_dtype(query.dtype) != "float16"
        )

    def _fused_attention(self, query, key, value, masks, scale, call):
        """`keras.ops.dot_product_attention` of `(B, T, h, D)` projections.

        The backend's fused kernel (PyTorch's scaled-dot-product attention,
        `jax.nn.dot_product_attention`), as keras's layer uses it, with an
        additive modifier as its bias; a query that sees no key gets a zero
        output, as on the other paths.
        """
        heads = (self._num_heads,)
        q_length, k_length = ops.shape(query)[1], ops.shape(key)[1]
        mask = attention_ops.build_mask(
            q_length, k_length, *_heads_to_4d(masks), call.use_causal_mask,
            self.sliding_window, call.offset, rank=4, mask_mod=self.mask_mod,
            heads=heads, context=call.context,
        )  # fmt: skip  # broadcastable to (B, H, Tq, Tk)
        bias = _heads_to_4d([call.bias])[0]
        if self.score_mod is not None:
            q_idx, kv_idx, head = attention_ops.positions(
                q_length, k_length, call.offset, 0, 4, heads
            )
            mod_bias = self.score_mod.bias(
                q_idx, kv_idx, head, num_heads=heads[0], **call.context
            )
            bias = mod_bias if bias is None else bias + mod_bias
        fused_mask = mask
        if bias is not None and mask is not None:  # one or the other
            bias = ops.where(mask, bias, mask_value("float32"))
            fused_mask = None
        output = ops.dot_product_attention(
            query, key, value, bias=bias, mask=fused_mask, scale=scale
        )  # (B, Tq, H, D)
        if mask is None:
            return output
        seen = ops.any(mask, axis=-1, keepdims=True)  # (B, H, Tq, 1)
        seen = ops.swapaxes(seen, 1, 2)  # (B, Tq, H, 1)
        return ops.where(seen, output, ops.zeros_like(output))

    def _attention(self, query, key, value, masks, call):
        """Attention of the projections `(B, *S, h, D)`.

        Returns the heads' outputs `(B, *S, H, Dv)` and the weights in the
        heads layout `(B', H_kv, G, Tq, Tk)` (or `None`). A dot-product
        score (its `dot_product_scale`) runs the backend's fused kernel, or
        scales the queries for the chunked and dense paths; the chunked path
        runs unless the weights are returned or dropout is active.
        """
        scale = self.score.dot_product_scale(self._key_dim)
        use_dropout = self._dropout > 0.0 and bool(call.training)
        if self._fusable(scale, query, use_dropout, call):
            fused = self._fused_attention(query, key, value, masks, scale, call)
            return fused, None
        q, k, v = (self._to_heads(x) for x in (query, key, value))
        score = None if scale is not None else self.score
        if scale not in (None, 1.0):
            q = q * ops.cast(scale, q.dtype)  # on q: O(T·D) not O(T²)
        mask_args = (call.use_causal_mask, self.sliding_window, call.offset)
        if self.chunk_size and not (call.return_weights or use_dropout):
            output = chunked.chunked_attention(
                q, k, v, self.chunk_size, score, *masks, *mask_args,
                attention_bias=call.bias, score_mod=self.score_mod,
                mask_mod=self.mask_mod, heads=(self.num_key_value_heads,
                self._group), context=call.context,
            )  # fmt: skip  # (B', H_kv, G, Tq, Dv)
            return self._from_heads(output, query), None
        mask = attention_ops.build_mask(
            ops.shape(q)[-2], ops.shape(k)[-2], *masks, *mask_args, rank=5,
            mask_mod=self.mask_mod, heads=(self.num_key_value_heads,
            self._group), context=call.context,
        )  # fmt: skip  # broadcastable to (B', H_kv, G, Tq, Tk)
        dropout = self._dropout_layer if use_dropout else None
        output, weights = self._dense_attention(
            q, k, v, mask, score, dropout, call
        )
        return self._from_heads(output, query), weights

    def _prepare(self, query, value, key, cache, index, **masks):
        """Check the call; the inputs as compute-dtype tensors with no Keras
        mask and nothing at the positions no output uses (NaN-safe), and
        the combined key mask."""
        self._check_cache(query, cache, index)
        if len(query.shape) == 3:
            check_call_shapes(
                query,
                value,
                key,
                masks["attention_mask"],
                key_length=None if cache is None else cache.shape[2],
                query_mask=masks["query_mask"],
                value_mask=masks["value_mask"],
                key_mask=masks["key_mask"],
            )
        key_mask = attention_ops.and_masks(
            masks["value_mask"], masks["key_mask"]
        )
        query, value, key = (  # integer inputs too, as keras layers do
            ops.cast(x, self.compute_dtype) for x in (query, value, key)
        )
        if masks["query_mask"] is not None or key_mask is not None:
            query, value, key = map(
                attention_ops.without_mask, (query, value, key)
            )
        if len(query.shape) == 3:
            query, key, value = hide_unseen_inputs(
                query,
                key,
                value,
                masks["query_mask"],
                None if cache is not None else key_mask,
                None if cache is not None else masks["attention_mask"],
            )
        return query, value, key, key_mask

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        cache=None,
        cache_update_index=None,
        attention_bias=None,
        segment_ids=None,
    ):
        key = value if key is None else key
        query, value, key, key_mask = self._prepare(
            query, value, key, cache, cache_update_index,
            query_mask=query_mask, value_mask=value_mask, key_mask=key_mask,
            attention_mask=attention_mask,
        )  # fmt: skip

        # 1. Project: (B, *S, d) -> (B, *S, h, D), keras's layout.
        projected_query, projected_key, projected_value, cache = self._project(
            query, key, value, cache, cache_update_index
        )
        # 2. The masks, in the heads layout.
        if cache_update_index is not None:  # never the unwritten cache end
            written = ops.arange(ops.shape(projected_key)[1]) < (
                cache_update_index + ops.shape(query)[1]
            )
            key_mask = attention_ops.and_masks(
                key_mask, ops.expand_dims(written, 0)
            )
        masks = self._masks(
            query_mask, key_mask, attention_mask, projected_query, projected_key
        )
        call = _Call(
            use_causal_mask,
            0 if cache_update_index is None else cache_update_index,
            return_attention_scores,
            training,
            self._heads_bias(attention_bias, projected_query, projected_key),
            {} if segment_ids is None else {"segment_ids": segment_ids},
        )
        # 3. Attention per head: (B, *S, H, Dv).
        output, weights = self._attention(
            projected_query, projected_key, projected_value, masks, call
        )
        # 4. Output: gate, output projection.
        if self._use_gate:
            output = output * self._gate_dense(query)
        output = self._output_dense(output)
        if not return_attention_scores:
            weights = None
        else:  # keras's layout (B, *other, H, *query axes, *key axes)
            shape = self._weights_shape(
                ops.shape(projected_query), ops.shape(projected_key)
            )
            weights = ops.reshape(weights, shape)
        return utils.pack_outputs(output, weights, cache)

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, "
                f"must be equal. Received: value_shape={tuple(value_shape)} "
                f"and key_shape={tuple(key_shape)}"
            )
        query_shape = tuple(query_shape)
        if self._output_shape:
            return tuple(query_shape[:-1]) + self._output_shape
        return tuple(query_shape)

    def compute_output_spec(
        self,
        query,
        value,
        key=None,
        return_attention_scores=False,
        cache=None,
        **kwargs,
    ):
        key = value if key is None else key
        output = keras.KerasTensor(
            self.compute_output_shape(query.shape, value.shape),
            dtype=self.compute_dtype,
        )
        weights = None
        if return_attention_scores:
            if not self.built:
                self.build(query.shape, value.shape, key.shape)
            key_shape = key.shape if cache is None else cache.shape[1:]
            shape = self._weights_shape(query.shape, key_shape)
            weights = keras.KerasTensor(shape, dtype="float32")
        if cache is not None:
            cache = keras.KerasTensor(cache.shape, dtype=cache.dtype)
        return utils.pack_outputs(output, weights, cache)

    def get_config(self):
        config = super().get_config()
        kernel_initializer, bias_initializer = self._initializers
        serialize = keras.saving.serialize_keras_object
        config.update(
            num_heads=self._num_heads,
            key_dim=self._key_dim,
            value_dim=self._value_dim,
            dropout=self._dropout,
            use_bias=self._use_bias,
            output_shape=self._output_shape,
            attention_axes=self._attention_axes,
            sliding_window=self.sliding_window,
            flash_attention=self.flash_attention,
            kernel_initializer=serialize(kernel_initializer),
            bias_initializer=serialize(bias_initializer),
            **{name: serialize(x) for name, x in self._regularizers.items()},
            use_gate=self._use_gate,
            seed=self.seed,
            score=scores.serialize(self.score),
            num_key_value_heads=self.num_key_value_heads,
            rotary_max_wavelength=self.rotary_max_wavelength,
            chunk_size=self.chunk_size,
            score_mod=mods.serialize(self.score_mod),
            mask_mod=mods.serialize(self.mask_mod),
        )
        return config
