"""Multi-head latent attention (DeepSeek-V2): a small latent cache."""

import math

import keras
from keras import ops

from keras_attention import kernel
from keras_attention import mods
from keras_attention import ops as attention_ops
from keras_attention import utils
from keras_attention.layers import cache as caches
from keras_attention.layers import heads
from keras_attention.layers import inputs
from keras_attention.layers.dropout import Dropout


def _check_arguments(num_heads, key_dim, kv_latent_dim, rotary_dim, **more):
    """Raise a `ValueError` naming the first bad constructor argument."""
    for name, value in (
        ("num_heads", num_heads),
        ("key_dim", key_dim),
        ("kv_latent_dim", kv_latent_dim),
    ):
        utils.check_positive_int(name, value)
    for name in ("value_dim", "query_latent_dim", "chunk_size"):
        utils.check_positive_int(name, more[name], allow_none=True)
    utils.check_number(
        "rotary_dim", rotary_dim, 0, integer=True, include_low=True
    )
    utils.check_even("rotary_dim", rotary_dim)
    utils.check_positive_number(
        "rotary_max_wavelength", more["rotary_max_wavelength"]
    )
    utils.check_rate("dropout", more["dropout"])


@keras.saving.register_keras_serializable(package="keras_attention")
class MultiHeadLatentAttention(keras.layers.Layer):
    r"""Multi-head latent attention: keys and values from one small latent.

    Each token's keys and values are up-projected from one
    `kv_latent_dim` latent, and `rotary_dim` extra query/key features carry
    the positions (RoPE), the key's part one vector shared by all heads:

    $$
    \begin{aligned}
    c_t &= W^{DKV} h_t, \quad
    k_{t,h} = [W^{UK}_h c_t ;\ \operatorname{RoPE}(W^{KR} h_t)], \quad
    v_{t,h} = W^{UV}_h c_t, \\
    q_{t,h} &= [W^{UQ}_h c'_t ;\ \operatorname{RoPE}(W^{QR}_h c'_t)],
    \quad c'_t = W^{DQ} h_t \text{ (or } h_t\text{)}, \\
    o_{t,h} &= \sum_j \operatorname{softmax}_j\!\Big(
        \frac{q_{t,h}^\top k_{j,h}}{\sqrt{D + D_R}}\Big)\, v_{j,h},
    \quad y_t = W^O [o_{t,1}; \dots; o_{t,H}],
    \end{aligned}
    $$

    with $D$ = `key_dim`, $D_R$ = `rotary_dim` (DeepSeek's scale). The
    decoding cache holds only $[c_t ; \operatorname{RoPE}(W^{KR} h_t)]$,
    `(B, T_max, kv_latent_dim + rotary_dim)` per layer, instead of
    `2 · H · D` numbers per token, and cached decoding attends in the latent
    space: $W^{UK}$ is absorbed into the query ($q^\top W^{UK} c$) and
    $W^{UV}$ applied after the weighted sum, which equals the full causal
    pass. The up-projections `key` and `value` have no biases, so that they
    can be absorbed. Masks, `chunk_size`, modifiers and `attention_bias`
    work as in `MultiHeadAttention`, on both forms.

    Sublayers (keras `EinsumDense` layouts): `query_latent` `(d, d_q)`
    when `query_latent_dim` is set, `query` `(d or d_q, H, D + D_R)`,
    `kv_latent` `(d_kv, C)`, `rotary_key` `(d_k, D_R)` when `rotary_dim`
    is set, `key` `(C, H, D)`, `value` `(C, H, D_v)`, `attention_output`
    `(H, D_v, d)`.

    Args:
        num_heads: number of heads `H`.
        key_dim: size `D` of each head's query/key content part.
        kv_latent_dim: size `C` of the key/value latent.
        value_dim: size of each value head. Defaults to `key_dim`.
        query_latent_dim: if set, the queries are up-projected from a latent
            of this size (low-rank queries). Defaults to `None`.
        rotary_dim: size `D_R` (even) of the rotary part of queries and
            keys; `0` for none. Defaults to `0`.
        rotary_max_wavelength: RoPE's longest wavelength. Defaults to
            `10000`.
        dropout: dropout rate on the attention weights. Defaults to `0.0`.
        use_bias: whether the down-projections, the rotary key, the query
            and the output projection have biases. Defaults to `False`.
        chunk_size: if set, keys per block of the memory-efficient path.
        score_mod: optional `keras_attention.mods.ScoreMod`.
        mask_mod: optional `keras_attention.mods.MaskMod`.
        seed: seed of the dropout. Defaults to `None`.
        kernel_initializer, bias_initializer: of every projection.

    Call arguments:
        query: `(B, Tq, dq)`.
        value: `(B, Tk, dv)`: the keys' and values' latent comes from it.
        key: optional `(B, Tk, dk)`: the rotary key comes from it; `value`
            is used when omitted.
        query_mask, value_mask, key_mask, attention_mask, use_causal_mask,
        return_attention_scores, training, attention_bias, segment_ids: as
            `MultiHeadAttention`'s.
        cache: optional `(B, T_max, kv_latent_dim + rotary_dim)`, e.g. from
            `initial_cache`.
        cache_update_index: int or scalar tensor, where the new tokens go.

    Returns:
        The output `(B, Tq, dq)`, then the weights `(B, H, Tq, Tk)` if
        `return_attention_scores`, then the updated cache if one was passed.

    Example:
        >>> import numpy as np
        >>> layer = MultiHeadLatentAttention(num_heads=2, key_dim=4,
        ...                                  kv_latent_dim=6, rotary_dim=2)
        >>> x = np.ones((1, 5, 8), "float32")
        >>> tuple(layer(x, x, use_causal_mask=True).shape)
        (1, 5, 8)
        >>> tuple(layer.initial_cache(batch_size=1, max_length=16).shape)
        (1, 16, 8)

    Reference:
        DeepSeek-AI, 2024, "DeepSeek-V2: A Strong, Economical, and Efficient
        Mixture-of-Experts Language Model", section 2.1.
    """

    scores_with_cache = True  # as `MultiHeadAttention`'s

    def __init__(
        self,
        num_heads,
        key_dim,
        kv_latent_dim,
        value_dim=None,
        query_latent_dim=None,
        rotary_dim=0,
        rotary_max_wavelength=10000,
        dropout=0.0,
        use_bias=False,
        chunk_size=None,
        score_mod=None,
        mask_mod=None,
        seed=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        _check_arguments(
            num_heads, key_dim, kv_latent_dim, rotary_dim,
            value_dim=value_dim, query_latent_dim=query_latent_dim,
            chunk_size=chunk_size, dropout=dropout,
            rotary_max_wavelength=rotary_max_wavelength,
        )  # fmt: skip
        super().__init__(**kwargs)
        self.supports_masking = True
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.kv_latent_dim = kv_latent_dim
        self.value_dim = value_dim or key_dim
        self.query_latent_dim = query_latent_dim
        self.rotary_dim = rotary_dim
        self.rotary_max_wavelength = rotary_max_wavelength
        self.dropout = dropout
        self.use_bias = use_bias
        self.chunk_size = chunk_size
        self.score_mod = mods.get(score_mod, mods.ScoreMod)
        self.mask_mod = mods.get(mask_mod, mods.MaskMod)
        self.seed = seed
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self._dropout_layer = Dropout(
            dropout, seed=seed, dtype=self.dtype_policy
        )

    def _dense(self, input_shape, output_shape, name, use_bias=None):
        """A keras-layout projection of the last axis, built."""
        settings = dict(
            use_bias=self.use_bias if use_bias is None else use_bias,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
        )
        dense = heads.einsum_dense(
            len(input_shape), 1, output_shape, name, settings
        )
        dense.build(input_shape)
        return dense

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        for name, shape in (("query", query_shape), ("value", value_shape),
                            ("key", key_shape)):  # fmt: skip
            utils.check_shape(name, shape, (None, None, None))
        self._input_dims = (query_shape[-1], value_shape[-1], key_shape[-1])
        heads_shape = (self.num_heads, self.key_dim + self.rotary_dim)
        query_input = query_shape
        if self.query_latent_dim:
            latent = (self.query_latent_dim,)
            self.query_latent = self._dense(query_shape, latent, "query_latent")
            query_input = (*query_shape[:-1], self.query_latent_dim)
        self.query_dense = self._dense(query_input, heads_shape, "query")
        latent = (*value_shape[:-1], self.kv_latent_dim)
        self.kv_latent = self._dense(value_shape, latent[-1:], "kv_latent")
        if self.rotary_dim:
            self.rotary_key = self._dense(
                key_shape, (self.rotary_dim,), "rotary_key"
            )
        up = (self.num_heads, self.key_dim)
        self.key_dense = self._dense(latent, up, "key", use_bias=False)
        up = (self.num_heads, self.value_dim)
        self.value_dense = self._dense(latent, up, "value", use_bias=False)
        self.output_dense = heads.einsum_dense(
            4, 2, (query_shape[-1],), "attention_output",
            dict(use_bias=self.use_bias, dtype=self.dtype_policy,
                 kernel_initializer=self.kernel_initializer,
                 bias_initializer=self.bias_initializer),
        )  # fmt: skip
        self.output_dense.build((*query_shape[:-1], *up))
        if self.score_mod is not None and not self.score_mod.built:
            self.score_mod.build((self.num_heads,))
        # Per-head layout of the full pass; one shared latent "key head"
        # for the absorbed (cached) pass.
        self._layout = heads.HeadsLayout(self.num_heads, self.num_heads,
                                         (1,), 3)  # fmt: skip
        self._latent_layout = heads.HeadsLayout(self.num_heads, 1, (1,), 3)
        self.built = True

    # === Decoding cache ===

    def initial_cache(self, batch_size, max_length):
        """An empty latent cache, for the decoding contract.

        Args:
            batch_size: int (or scalar int tensor) `B`.
            max_length: int `T_max`.

        Returns:
            Zeros `(B, T_max, kv_latent_dim + rotary_dim)` in the compute
            dtype.
        """
        caches.check_batch_and_length(batch_size, max_length)
        width = self.kv_latent_dim + self.rotary_dim
        return ops.zeros((batch_size, max_length, width), self.compute_dtype)

    def cache_size_per_token(self):
        """Numbers cached per token and layer: `kv_latent_dim +
        rotary_dim` (multi-head attention caches `2 · H_kv · D`)."""
        return self.kv_latent_dim + self.rotary_dim

    # === Projections ===

    def _rotate(self, x, offset):
        """RoPE of `(B, T, ..., D_R)` at positions `offset + 0..T-1`."""
        positions = ops.arange(ops.shape(x)[1]) + offset
        positions = ops.reshape(positions, (-1,) + (1,) * (len(x.shape) - 3))
        return attention_ops.rotary_embedding(
            x, positions, self.rotary_max_wavelength
        )

    def _project_query(self, query, offset):
        """`(content (B, T, H, D), rotary part (B, T, H, D_R) or None)`."""
        if self.query_latent_dim:
            query = self.query_latent(query)
        projected = self.query_dense(query)  # (B, T, H, D + D_R)
        if not self.rotary_dim:
            return projected, None
        content = projected[..., : self.key_dim]
        return content, self._rotate(projected[..., self.key_dim :], offset)

    def _latent(self, key, value, cache, index):
        """The latent `[c ; RoPE(W^KR k)]` `(B, T, C + D_R)` attended, and
        the cache: the new tokens' latent, or the cache it was written to."""
        if cache is not None and index is None:
            return cache, cache  # precomputed
        latent = self.kv_latent(value)  # (B, Tk, C)
        if self.rotary_dim:
            offset = 0 if index is None else index
            rotary = self._rotate(self.rotary_key(key), offset)
            latent = ops.concatenate([latent, rotary], axis=-1)
        if cache is None:
            return latent, None
        cache = caches.write(cache, latent, index, axis=1)
        return cache, cache

    def _heads(self, content, query_rotary, latent, absorbed):
        """Queries, keys and values for the kernel, and their layout.

        Full pass: per-head keys `[W^UK c ; k_R]` and values `W^UV c`.
        Absorbed (decoding): queries `[q W^UK ; q_R]` `(B, T, H, C + D_R)`
        against the latent itself, one key/value "head" for all heads.
        """
        latent_dim = self.kv_latent_dim
        if absorbed:
            up = ops.cast(self.key_dense.kernel, content.dtype)  # (C, H, D)
            query = ops.einsum("bthd,chd->bthc", content, up)
            key = ops.expand_dims(latent, 2)  # (B, Tk, 1, C + D_R)
            value = key[..., :latent_dim]
            layout = self._latent_layout
        else:
            c = latent[..., :latent_dim]
            query, key, value = content, self.key_dense(c), self.value_dense(c)
            if self.rotary_dim:  # one rotary key for every head
                rotary = ops.expand_dims(latent[..., latent_dim:], 2)
                rotary = ops.broadcast_to(
                    rotary, (*ops.shape(key)[:-1], self.rotary_dim)
                )
                key = ops.concatenate([key, rotary], axis=-1)
            layout = self._layout
        if self.rotary_dim:
            query = ops.concatenate([query, query_rotary], axis=-1)
        return query, key, value, layout

    # === Call ===

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
        width = self.kv_latent_dim + self.rotary_dim
        inputs.check_call(
            query, value, key, self._input_dims,
            dict(query_mask=query_mask, value_mask=value_mask,
                 key_mask=key_mask, attention_mask=attention_mask),
            cache, cache_update_index, (query.shape[0], None, width), 1,
        )  # fmt: skip
        key_mask = attention_ops.and_masks(value_mask, key_mask)
        query, value, key = inputs.prepare(
            self.compute_dtype, query, value, key, query_mask, key_mask,
            attention_mask, cached=cache is not None,
        )  # fmt: skip
        # 1. Project: the queries, the latent (written into the cache).
        offset = 0 if cache_update_index is None else cache_update_index
        content, query_rotary = self._project_query(query, offset)
        latent, cache = self._latent(key, value, cache, cache_update_index)
        q, k, v, layout = self._heads(
            content, query_rotary, latent, absorbed=cache is not None
        )
        # 2. Attention per head, in the kernel's heads layout.
        if attention_mask is not None:
            attention_mask = layout.attention_mask(attention_mask, q, k)
        output, weights = kernel.attention(
            *map(layout.to_heads, (q, k, v)),
            scale=1.0 / math.sqrt(self.key_dim + self.rotary_dim),
            query_mask=query_mask, key_mask=key_mask,
            attention_mask=attention_mask, use_causal_mask=use_causal_mask,
            cache_update_index=cache_update_index, score_mod=self.score_mod,
            mask_mod=self.mask_mod,
            attention_bias=layout.bias(attention_bias, q, k),
            context={} if segment_ids is None else {"segment_ids": segment_ids},
            heads=layout.heads, chunk_size=self.chunk_size,
            dropout=self._dropout_layer, training=training,
            return_weights=return_attention_scores,
        )  # fmt: skip
        # 3. Output: (B, Tq, H, Dv) (W^UV after the weighted latent when
        # absorbed), then the output projection.
        output = layout.from_heads(output, q)
        if cache is not None:
            up = ops.cast(self.value_dense.kernel, output.dtype)  # (C, H, Dv)
            output = ops.einsum("bthc,chv->bthv", output, up)
        output = self.output_dense(output)
        if weights is not None:
            weights = layout.keras_weights(weights, q, k)
        return utils.pack_outputs(output, weights, cache)

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        return tuple(query_shape)

    def compute_output_spec(
        self, query, value, key=None, return_attention_scores=False,
        cache=None, **kwargs,
    ):  # fmt: skip
        output = keras.KerasTensor(query.shape, dtype=self.compute_dtype)
        weights = None
        if return_attention_scores:
            keys = (value if cache is None else cache).shape[1]
            shape = (query.shape[0], self.num_heads, query.shape[1], keys)
            weights = keras.KerasTensor(shape, dtype="float32")
        if cache is not None:
            cache = keras.KerasTensor(cache.shape, dtype=cache.dtype)
        return utils.pack_outputs(output, weights, cache)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "kv_latent_dim": self.kv_latent_dim,
            "value_dim": self.value_dim,
            "query_latent_dim": self.query_latent_dim,
            "rotary_dim": self.rotary_dim,
            "rotary_max_wavelength": self.rotary_max_wavelength,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "chunk_size": self.chunk_size,
            "score_mod": mods.serialize(self.score_mod),
            "mask_mod": mods.serialize(self.mask_mod),
            "seed": self.seed,
            "kernel_initializer": utils.serialize(self.kernel_initializer),
            "bias_initializer": utils.serialize(self.bias_initializer),
        }
