"""Multi-head attention: a drop-in for `keras.layers.MultiHeadAttention`."""

import keras
from keras import ops

from keras_attention import mods
from keras_attention import ops as attention_ops
from keras_attention import parallel
from keras_attention import scores
from keras_attention import utils
from keras_attention.layers import cache as caches
from keras_attention.layers import heads
from keras_attention.layers import inputs
from keras_attention.layers.dropout import Dropout


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


def _check_arguments(num_heads, key_dim, dropout, rotary_wavelength, **ints):
    """Raise a `ValueError` naming the first bad constructor argument."""
    utils.check_positive_int("num_heads", num_heads)
    utils.check_positive_int("key_dim", key_dim)
    utils.check_heads(num_heads, ints.pop("num_key_value_heads"))
    for name, value in ints.items():
        utils.check_positive_int(name, value, allow_none=True)
    utils.check_rate("dropout", dropout)
    if rotary_wavelength is not None:
        utils.check_positive_number("rotary_max_wavelength", rotary_wavelength)
        utils.check_even("key_dim", key_dim)


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
      (`keras_attention.chunked`), so memory is O(T · chunk) instead of
      O(T²), for the forward and (with a dot-product score) the backward
      pass. Used unless attention scores are returned or dropout is active.
    - Incremental decoding, the package's one decoding contract:
      `cache = layer.initial_cache(batch_size, max_length)`, then
      `output, cache = layer(x, x, use_causal_mask=True, cache=cache,
      cache_update_index=i)` for one token or a prefill of several at index
      0. The cache is `(B, 2, T_max, H_kv, D)` keys and values (keras-hub's
      `CachedMultiHeadAttention` layout); the queries sit at
      `cache_update_index` and keys past the last written one are never
      seen. keras-hub's way of driving it, an explicit `attention_mask`
      `(B, Tq, T_max)` over the whole cache, works too. With a cache and no
      index the cache holds precomputed keys/values (`compute_cache`, for
      cross-attention).

    All of it runs in `keras_attention.kernel`, the core every attention
    layer calls after its projections.

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
        qk_norm: `"rms"` to RMS-normalise every query and key head over its
            `D` features before rotary embedding and the score,
            $\hat q = q / \sqrt{\operatorname{mean}(q^2) + 10^{-6}} \cdot g$
            with learned gains `query_norm`, `key_norm` `(D,)` initialised
            to 1 (Gemma 3, OLMo 2), or `None`. Defaults to `None`.
        use_sinks: whether each head has a learned sink logit $s_h$ (the
            weight `sinks` `(H,)`, initialised to 0) in the softmax's
            denominator only,
            $a_{ij} = e^{e_{ij}} / (e^{s_h} + \sum_{j'} e^{e_{ij'}})$
            (gpt-oss): a query may give its mass to no key, so the returned
            weights' rows sum below 1. PyTorch's fused kernel has no sink,
            so the other paths run there. Defaults to `False`.
        sequence_parallel: optional name of a device mesh axis, e.g.
            `"sequence"`. While a `keras.distribution` whose device mesh
            has that axis is active on JAX, attention runs as ring
            attention (`keras_attention.parallel`): the sequence is split
            over the axis, each device keeps its query block and the
            key/value blocks go around the ring; outputs and gradients
            equal ordinary attention. Returned scores and cached decoding
            run as ordinary attention; dropout > 0 while training is a
            `ValueError`. Otherwise (no such distribution, TensorFlow,
            PyTorch) it is ordinary attention. Defaults to `None`.

    Call arguments:
        query: `(B, Tq, dq)`.
        value: `(B, Tk, dv)`.
        key: optional `(B, Tk, dk)`; `value` is used when omitted.
        query_mask: optional bool `(B, Tq)`; filled from Keras masks.
        value_mask: optional bool `(B, Tk)`; filled from Keras masks.
        key_mask: optional bool `(B, Tk)`; filled from Keras masks.
        attention_mask: optional bool `(B, Tq, Tk)` (or `(B, H, Tq, Tk)`),
            `True` = may attend; with a cache, `Tk` is the cache's length
            `T_max`.
        return_attention_scores: whether to also return the weights.
        training: whether dropout is active.
        use_causal_mask: whether query $i$ only sees keys $j \le i$.
        cache: optional `(B, 2, T_max, H_kv, D)` key/value cache, e.g. from
            `initial_cache`.
        cache_update_index: int or scalar tensor, where the new keys go
            (the position of the first query).
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
        Memory"; Gemma Team, 2025, "Gemma 3 Technical Report" (QK-norm);
        Xiao et al., 2024, "Efficient Streaming Language Models with
        Attention Sinks", and OpenAI, 2025, "gpt-oss-120b & gpt-oss-20b
        Model Card" (learned sinks); Liu et al., 2023, "Ring Attention with
        Blockwise Transformers for Near-Infinite Context".
    """

    # Whether a cached call can return attention weights (a recurrent
    # state cannot: `LinearAttention`).
    scores_with_cache = True

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
        qk_norm=None,
        use_sinks=False,
        sequence_parallel=None,
        **kwargs,
    ):
        utils.check_choice("qk_norm", qk_norm, (None, "rms"))
        parallel.check_axis_name("sequence_parallel", sequence_parallel)
        utils.check_choice("use_sinks", use_sinks, (True, False))
        _check_arguments(
            num_heads, key_dim, dropout, rotary_max_wavelength,
            value_dim=value_dim, sliding_window=sliding_window,
            num_key_value_heads=num_key_value_heads, chunk_size=chunk_size,
        )  # fmt: skip
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
        self.qk_norm = qk_norm
        self.use_sinks = use_sinks
        self.sequence_parallel = sequence_parallel
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

    def _dense(self, rank, bound_dims, output_shape, name, **kwargs):
        """A keras-layout projection (see `heads.einsum_dense`)."""
        kernel_initializer, bias_initializer = self._initializers
        settings = dict(
            use_bias=self._use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            dtype=self.dtype_policy,
            **self._regularizers,
        )
        return heads.einsum_dense(
            rank, bound_dims, output_shape, name, settings, **kwargs
        )

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        axes = heads.attention_axes_of(
            query_shape, value_shape, key_shape, self._attention_axes
        )
        rank = len(query_shape)  # the projections add a head axis
        if rank != 3 and (self.rotary_max_wavelength or self.chunk_size):
            raise ValueError(
                "`rotary_max_wavelength` and `chunk_size` need inputs of rank "
                f"3 (B, T, d). Received: query.shape={tuple(query_shape)}"
            )
        self._attention_axes = axes
        self._layout = heads.HeadsLayout(
            self._num_heads, self.num_key_value_heads, axes, rank
        )
        self._input_dims = (query_shape[-1], value_shape[-1], key_shape[-1])
        num_heads, kv_heads = self._num_heads, self.num_key_value_heads
        for name, shape, size, width in (  # keras's order of weights
            ("query", query_shape, num_heads, self._key_dim),
            ("key", key_shape, kv_heads, self._key_dim),
            ("gate", query_shape, num_heads, self._value_dim),
            ("value", value_shape, kv_heads, self._value_dim),
        ):
            if name == "gate" and not self._use_gate:
                continue
            activation = "sigmoid" if name == "gate" else None
            dense = self._dense(rank, 1, (size, width), name,
                                activation=activation)  # fmt: skip
            dense.build(shape)
            setattr(self, f"_{name}_dense", dense)
        self._output_dense = self._dense(
            rank + 1, 2, self._output_shape or (query_shape[-1],),
            "attention_output",
        )  # fmt: skip
        self._output_dense.build(
            tuple(query_shape[:-1]) + (num_heads, self._value_dim)
        )
        self._build_extras()
        if self.score_mod is not None and not self.score_mod.built:
            self.score_mod.build((num_heads,))
        if not self.score.built:
            group = self._layout.heads[1:]
            self.score.build(
                (None, *self._layout.heads, None, self._key_dim),
                (None, kv_heads, *(1 for _ in group), None, self._key_dim),
            )
        self.built = True

    def _build_extras(self):
        """QK-norm gains `query_norm`, `key_norm` `(D,)` (ones) and the
        attention sinks `sinks` `(H,)` (zeros), when asked for."""
        if self.qk_norm:
            for name in ("query_norm", "key_norm"):
                weight = self.add_weight(
                    name=name, shape=(self._key_dim,), initializer="ones"
                )
                setattr(self, f"{name}_scale", weight)
        if self.use_sinks:
            self.sinks = self.add_weight(
                name="sinks", shape=(self._num_heads,), initializer="zeros"
            )

    # === Decoding caches ===

    def _check_cacheable(self):
        if self._key_dim != self._value_dim:
            raise ValueError(
                "A key/value cache needs `value_dim == key_dim`. Received: "
                f"key_dim={self._key_dim}, value_dim={self._value_dim}"
            )

    def initial_cache(self, batch_size, max_length):
        """An empty self-attention cache, for the decoding contract.

        Args:
            batch_size: int (or scalar int tensor) `B`.
            max_length: int `T_max`, the number of positions it holds.

        Returns:
            Zeros `(B, 2, T_max, H_kv, D)` in the compute dtype.
        """
        caches.check_batch_and_length(batch_size, max_length)
        self._check_cacheable()
        shape = (batch_size, 2, max_length, self.num_key_value_heads)
        return ops.zeros(shape + (self._key_dim,), dtype=self.compute_dtype)

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

    # === Projections ===

    def _position(self, x, offset, name):
        """Queries or keys `(B, T, h, D)` as the score sees them: RMS-normed
        per head (`qk_norm`, Gemma 3 / OLMo 2), then rotated (RoPE, at
        positions `offset + 0..T-1`)."""
        if self.qk_norm:
            scale = getattr(self, f"{name}_norm_scale")
            x = attention_ops.rms_normalize(x, scale, epsilon=1e-6)
        if self.rotary_max_wavelength is None:
            return x
        positions = ops.arange(ops.shape(x)[1]) + offset
        return attention_ops.rotary_embedding(
            x, ops.expand_dims(positions, -1), self.rotary_max_wavelength
        )

    def _project_key_value(self, key, value, offset):
        """`(B, Tk, d)` -> keys (rotated) and values `(B, Tk, H_kv, D)`."""
        projected_key = self._position(self._key_dense(key), offset, "key")
        return projected_key, self._value_dense(value)

    def _project(self, query, key, value, cache, index):
        """Projections `(B, *S, h, D)` of the inputs, and the new cache.

        With a cache and an index the new keys/values are written into it
        and the whole cache is attended; with a cache and no index the
        cache holds precomputed (rotated) keys/values.
        """
        offset = 0 if index is None else index
        projected_query = self._position(
            self._query_dense(query), offset, "query"
        )
        if cache is not None and index is None:
            return projected_query, cache[:, 0], cache[:, 1], cache
        projected_key, projected_value = self._project_key_value(
            key, value, offset
        )
        if cache is not None:
            projected_key, projected_value, cache = self._write_cache(
                cache, projected_key, projected_value, index
            )
        return projected_query, projected_key, projected_value, cache

    def _write_cache(self, cache, key, value, index):
        """Write the new keys/values `(B, T, H_kv, D)` at `index`: the
        whole cache's keys and values, and the new cache."""
        self._check_cacheable()
        update = ops.stack((key, value), axis=1)  # (B, 2, T, H_kv, D)
        cache = caches.write(cache, update, index, axis=2)
        return cache[:, 0], cache[:, 1], cache

    def _cache_spec(self, batch_size):
        """The cache's expected shape (`None` = any size) and time axis."""
        heads = (self.num_key_value_heads, self._key_dim)
        return (batch_size, 2, None, *heads), 2

    # === Call ===

    def _check_call(self, query, value, key, cache, index, masks):
        """Raise a `ValueError` naming the call argument that is wrong."""
        inputs.check_call(
            query, value, key, self._input_dims, masks, cache, index,
            *self._cache_spec(query.shape[0]),
        )  # fmt: skip

    def _attend(self, query, key, value, cache, **options):
        """Attention of the heads `(B', *heads, T, D)` with the call's
        `options`: one call into `keras_attention.kernel`. The hook where
        a subclass changes the attention itself (two softmax maps, a
        linear kernel with a recurrent state) and keeps the projections,
        masks and call checks.

        Returns:
            `(output (B', *heads, Tq, Dv), weights or None, cache)`.
        """
        return (*self._attention(query, key, value, **options), cache)

    def _attention(self, query, key, value, **options):
        """`kernel.attention`, or ring attention over the mesh axis
        `sequence_parallel` names while a `keras.distribution` with that
        axis is active on JAX (`keras_attention.parallel.attention`)."""
        return parallel.attention(
            query, key, value, self.sequence_parallel, **options
        )

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
        self._check_call(
            query, value, key, cache, cache_update_index,
            dict(query_mask=query_mask, value_mask=value_mask,
                 key_mask=key_mask, attention_mask=attention_mask),
        )  # fmt: skip
        key_mask = attention_ops.and_masks(value_mask, key_mask)
        query, value, key = inputs.prepare(
            self.compute_dtype, query, value, key, query_mask, key_mask,
            attention_mask, cached=cache is not None,
        )  # fmt: skip
        # 1. Project: (B, *S, d) -> (B, *S, h, D), keras's layout.
        q, k, v, cache = self._project(query, key, value, cache,
                                       cache_update_index)  # fmt: skip
        # 2. Attention per head, in the kernel's heads layout.
        layout = self._layout
        if attention_mask is not None:
            attention_mask = layout.attention_mask(attention_mask, q, k)
        output, weights, cache = self._attend(
            *map(layout.to_heads, (q, k, v)), cache, score=self.score,
            query_mask=query_mask, key_mask=key_mask,
            attention_mask=attention_mask, use_causal_mask=use_causal_mask,
            sliding_window=self._sliding_window,
            cache_update_index=cache_update_index, score_mod=self.score_mod,
            mask_mod=self.mask_mod,
            attention_bias=layout.bias(attention_bias, q, k),
            context={} if segment_ids is None else {"segment_ids": segment_ids},
            heads=layout.heads, chunk_size=self.chunk_size,
            dropout=self._dropout_layer, training=training,
            return_weights=return_attention_scores,
            sinks=self.sinks if self.use_sinks else None,
        )  # fmt: skip
        # 3. Output: (B, *S, H, Dv), gate, output projection.
        output = layout.from_heads(output, q)
        if self._use_gate:
            output = output * self._gate_dense(query)
        output = self._output_dense(output)
        if weights is not None:  # keras's (B, *other, H, *Sq, *Sk)
            weights = layout.keras_weights(weights, q, k)
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
            shape = self._layout.weights_shape(query.shape, key_shape)
            weights = keras.KerasTensor(shape, dtype="float32")
        if cache is not None:
            cache = keras.KerasTensor(cache.shape, dtype=cache.dtype)
        return utils.pack_outputs(output, weights, cache)

    def get_config(self):
        config = super().get_config()
        kernel_initializer, bias_initializer = self._initializers
        serialize = utils.serialize
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
            qk_norm=self.qk_norm,
            use_sinks=self.use_sinks,
            sequence_parallel=self.sequence_parallel,
        )
        return config
