"""Multi-head attention: a drop-in for `keras.layers.MultiHeadAttention`."""

import math
import string

import keras
from keras import ops

from keras_attention import ops as attention_ops
from keras_attention import scores
from keras_attention.layers.attention import check_dropout


def _projection(free_dims, bound_dims, output_dims):
    """EinsumDense equation and bias axes, as keras's MHA builds them."""
    letters = string.ascii_lowercase
    free = letters[:free_dims]
    bound = letters[free_dims : free_dims + bound_dims]
    out = letters[free_dims + bound_dims : free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out


def _positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer"
            + (" or `None`" if allow_none else "")
            + f". Received: {name}={value}"
        )


def _without_mask(x):
    """The same values in a new tensor, so no Keras mask rides along.

    The projections do not take masks (masks act on the attention weights),
    and Keras warns when a masked tensor enters a layer that drops its mask.
    A reshape to the same shape copies nothing.
    """
    return ops.reshape(x, ops.shape(x))


@keras.saving.register_keras_serializable(package="keras_attention")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, a drop-in for `keras.layers.MultiHeadAttention`.

    `head_h = Attention(x_q W_h^Q, x_k W_h^K, x_v W_h^V)` for `h = 1..H`,
    `output = concat_h(head_h) W^O`, with the default score
    `softmax(q kᵀ / √D) v` (Vaswani et al.).

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
        sliding_window: optional int: query `i` sees keys `j` with
            `|i - j| < sliding_window`. Defaults to `None`.
        flash_attention: accepted for compatibility, ignored.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint,
        bias_constraint: as in `keras.layers.EinsumDense`, for every
            projection.
        use_gate: whether a sigmoid gate of the query multiplies the heads
            (keras's gated attention). Defaults to `False`.
        seed: seed of the dropout. Defaults to `None`.
        score: a score name, config dict or score layer, applied per head.
            Defaults to `"scaled_dot"` (`1/√key_dim`, as keras).
        num_key_value_heads: number of key/value heads `H_kv`, a divisor of
            `num_heads`. Defaults to `num_heads`.
        rotary_max_wavelength: if set, RoPE with this wavelength is applied to
            queries and keys. Defaults to `None`.
        chunk_size: if set, keys per block of the memory-efficient path.
            Defaults to `None`.

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
        use_causal_mask: whether query `i` only sees keys `j <= i`.
        cache: optional `(B, 2, T_max, H_kv, D)` key/value cache.
        cache_update_index: int or scalar tensor, where the new keys go.

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
        **kwargs,
    ):
        _positive_int("num_heads", num_heads)
        _positive_int("key_dim", key_dim)
        _positive_int("value_dim", value_dim, allow_none=True)
        _positive_int("num_key_value_heads", num_key_value_heads, True)
        _positive_int("sliding_window", sliding_window, allow_none=True)
        _positive_int("chunk_size", chunk_size, allow_none=True)
        check_dropout(dropout)
        num_key_value_heads = num_key_value_heads or num_heads
        if num_heads % num_key_value_heads:
            raise ValueError(
                "`num_heads` must be a multiple of `num_key_value_heads`. "
                f"Received: num_heads={num_heads}, "
                f"num_key_value_heads={num_key_value_heads}"
            )
        if rotary_max_wavelength is not None and key_dim % 2:
            raise ValueError(
                "Rotary embedding needs an even `key_dim`. "
                f"Received: key_dim={key_dim}"
            )
        super().__init__(**kwargs)
        self.supports_masking = True
        self.score = scores.get(score)
        self._num_heads = num_heads
        self._key_dim = key_dim
        self._value_dim = value_dim or key_dim
        self._dropout = dropout
        self._use_bias = use_bias
        if isinstance(output_shape, int):
            output_shape = (output_shape,)
        self._output_shape = tuple(output_shape) if output_shape else None
        if isinstance(attention_axes, int):
            attention_axes = (attention_axes,)
        self._attention_axes = (
            tuple(attention_axes) if attention_axes is not None else None
        )
        self.sliding_window = sliding_window
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
        self.num_key_value_heads = num_key_value_heads
        self.rotary_max_wavelength = rotary_max_wavelength
        self.chunk_size = chunk_size
        self._dropout_layer = keras.layers.Dropout(
            dropout, seed=seed, dtype=self.dtype_policy
        )

    num_heads = property(lambda self: self._num_heads)
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

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
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
        group = heads // kv_heads
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

    def _head_mask(self, attention_mask, query, key):
        """keras-style `attention_mask` -> bool `(B', H?, G?, Tq, Tk)`."""
        mask = ops.cast(attention_mask, "bool")
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
            x, positions[:, None], self.rotary_max_wavelength
        )

    def _check_cacheable(self):
        if self._key_dim != self._value_dim:
            raise ValueError(
                "A key/value cache needs `value_dim == key_dim`. Received: "
                f"key_dim={self._key_dim}, value_dim={self._value_dim}"
            )

    def _update_cache(self, cache, key, value, index):
        """Write `key`, `value` `(B, T, H_kv, D)` into `cache` at `index`."""
        self._check_cacheable()
        # One write into the whole cache: each copy of it costs a pass over
        # (B, 2, T_max, H_kv, D), the bulk of a decoding step's memory work.
        update = ops.cast(ops.stack((key, value), axis=1), cache.dtype)
        if key.shape[1] == 1:
            # One token (a decoding step): a `where` against its position
            # is one pass, faster on CPU than a dynamic-update-slice copy.
            length = ops.shape(cache)[2]
            position = ops.equal(ops.arange(length), index)
            cache = ops.where(position[:, None, None], update, cache)
        else:
            cache = ops.slice_update(cache, [0, 0, index, 0, 0], update)
        return cache[:, 0], cache[:, 1], cache

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
        projected_key = self._key_dense(_without_mask(key))
        if self.rotary_max_wavelength is not None:
            projected_key = self._rotate(projected_key, 0)
        projected_value = self._value_dense(_without_mask(value))
        return ops.stack((projected_key, projected_value), axis=1)

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
    ):
        key = value if key is None else key
        if cache is None and cache_update_index is not None:
            raise ValueError(
                "`cache_update_index` needs a `cache`. Received: cache=None, "
                f"cache_update_index={cache_update_index}"
            )
        if value_mask is not None and key_mask is not None:
            key_mask = ops.logical_and(
                ops.cast(value_mask, "bool"), ops.cast(key_mask, "bool")
            )
        key_mask = value_mask if key_mask is None else key_mask
        offset = 0 if cache_update_index is None else cache_update_index
        if query_mask is not None or key_mask is not None:
            query, value, key = map(_without_mask, (query, value, key))

        # Projections: (B, T, d) -> (B, T, h, D), keras's layout.
        projected_query = self._query_dense(query)
        if cache is not None and cache_update_index is None:
            projected_key, projected_value = cache[:, 0], cache[:, 1]
            use_rotary = False  # the cache holds rotated keys already
        else:
            projected_key = self._key_dense(key)
            projected_value = self._value_dense(value)
            use_rotary = self.rotary_max_wavelength is not None
        if self.rotary_max_wavelength is not None:
            projected_query = self._rotate(projected_query, offset)
        if use_rotary:
            projected_key = self._rotate(projected_key, offset)
        if cache is not None and cache_update_index is not None:
            projected_key, projected_value, cache = self._update_cache(
                cache, projected_key, projected_value, cache_update_index
            )

        rank = len(query.shape)
        head_mask = None
        if rank != 3 or (
            attention_mask is not None and len(attention_mask.shape) > 3
        ):
            if rank != 3 and not all(m is None for m in (query_mask, key_mask)):
                raise ValueError(
                    "`query_mask`, `value_mask` and `key_mask` need inputs of "
                    f"rank 3 (B, T, d). Received: query.shape={query.shape}"
                )
            if attention_mask is not None:
                head_mask = self._head_mask(
                    attention_mask, projected_query, projected_key
                )
            attention_mask = None
        elif attention_mask is not None:
            attention_mask = ops.cast(attention_mask, "bool")
            while len(attention_mask.shape) < 3:
                attention_mask = attention_mask[None]

        q = self._to_heads(projected_query)  # (B', H_kv, G, Tq, D)
        k = self._to_heads(projected_key)  # (B', H_kv, 1, Tk, D)
        v = self._to_heads(projected_value)  # (B', H_kv, 1, Tk, Dv)
        score = self.score
        if type(score) in (scores.Dot, scores.ScaledDot):
            scale = getattr(score, "scale", None)
            if scale is None and isinstance(score, scores.ScaledDot):
                scale = 1.0 / math.sqrt(self._key_dim)
            if scale is not None:
                q = q * ops.cast(scale, q.dtype)  # on q: O(T·D) not O(T²)
            score = None
        query_length, key_length = ops.shape(q)[-2], ops.shape(k)[-2]
        use_dropout = self._dropout > 0.0 and bool(training)

        if (
            self.chunk_size
            and not return_attention_scores
            and head_mask is None
            and not use_dropout
        ):
            output = attention_ops.chunked_attention(
                q,
                k,
                v,
                self.chunk_size,
                score,
                query_mask,
                key_mask,
                attention_mask,
                use_causal_mask,
                self.sliding_window,
                offset,
            )  # (B', H_kv, G, Tq, Dv)
            weights = None
        else:
            mask = attention_ops.combine_masks(
                query_length,
                key_length,
                query_mask,
                key_mask,
                attention_mask,
                use_causal_mask,
                self.sliding_window,
                offset,
            )  # (B, Tq, Tk)-like or None
            if mask is not None:
                mask = mask[:, None, None]  # (B, 1, 1, Tq, Tk)
            if head_mask is not None:
                mask = (
                    head_mask
                    if mask is None
                    else ops.logical_and(mask, head_mask)
                )
            if self.num_key_value_heads == self._num_heads:
                # No groups: drop the G axis; 4-D products (and their
                # gradients) are faster than broadcasting 5-D ones.
                q, k, v = (ops.squeeze(x, 2) for x in (q, k, v))
                if mask is not None:
                    mask = ops.squeeze(mask, 2)  # (B', 1 or H, Tq, Tk)
            if score is None:
                # q kᵀ without materialising kᵀ (a transposed matmul).
                attention_scores = ops.einsum("...qd,...kd->...qk", q, k)
            else:
                attention_scores = score(q, k)  # (B', H_kv, G, Tq, Tk)
            output, weights = attention_ops.attend(
                attention_scores,
                v,
                mask,
                self._dropout_layer if use_dropout else None,
                training,
            )

        output = self._from_heads(output, projected_query)  # (B, *S, H, Dv)
        if self._use_gate:
            output = output * self._gate_dense(query)
        output = self._output_dense(output)
        results = (output,)
        if return_attention_scores:
            shape = self._weights_shape(ops.shape(query), ops.shape(key))
            results += (ops.reshape(weights, shape),)
        if cache is not None:
            results += (cache,)
        return results[0] if len(results) == 1 else results

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
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
        specs = (
            keras.KerasTensor(
                self.compute_output_shape(query.shape, value.shape),
                dtype=self.compute_dtype,
            ),
        )
        if return_attention_scores:
            if not self.built:
                self.build(query.shape, value.shape, key.shape)
            key_shape = key.shape if cache is None else cache.shape[1:]
            shape = self._weights_shape(query.shape, key_shape)
            specs += (keras.KerasTensor(shape, dtype="float32"),)
        if cache is not None:
            specs += (keras.KerasTensor(cache.shape, dtype=cache.dtype),)
        return specs[0] if len(specs) == 1 else specs

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
        )
        return config
