"""Transformer encoder and decoder blocks."""

import keras

from keras_attention import mods
from keras_attention import ops as attention_ops
from keras_attention import scores
from keras_attention import utils
from keras_attention.layers.dropout import Dropout
from keras_attention.layers.feed_forward import FeedForward
from keras_attention.layers.kinds import ATTENTION_KINDS
from keras_attention.layers.kinds import check_options
from keras_attention.layers.kinds import self_attention_arguments
from keras_attention.layers.kinds import serialize_options


def _check_block_arguments(
    num_heads,
    intermediate_dim,
    dropout,
    norm_first,
    layer_norm_epsilon,
    key_dim,
    num_key_value_heads,
    rotary_max_wavelength,
    chunk_size,
):
    """Raise a `ValueError` naming the first bad block argument (at
    construction, not when the attention is built)."""
    utils.check_positive_int("num_heads", num_heads)
    utils.check_positive_int("intermediate_dim", intermediate_dim)
    utils.check_rate("dropout", dropout)
    utils.check_choice("norm_first", norm_first, (True, False))
    utils.check_positive_number("layer_norm_epsilon", layer_norm_epsilon)
    for name, value in (
        ("key_dim", key_dim),
        ("num_key_value_heads", num_key_value_heads),
        ("chunk_size", chunk_size),
    ):
        utils.check_positive_int(name, value, allow_none=True)
    utils.check_positive_number(
        "rotary_max_wavelength", rotary_max_wavelength, allow_none=True
    )
    utils.check_heads(num_heads, num_key_value_heads)


class _Block(keras.layers.Layer):
    """What encoder and decoder blocks share: arguments, residual, FFN.

    Each sublayer `f` is wrapped as `x + dropout(f(norm(x)))` (pre-norm,
    `norm_first=True`) or `norm(x + dropout(f(x)))` (post-norm, the
    original Transformer).
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.0,
        activation="relu",
        norm_first=False,
        layer_norm_epsilon=1e-5,
        score="scaled_dot",
        key_dim=None,
        num_key_value_heads=None,
        rotary_max_wavelength=None,
        chunk_size=None,
        kernel_initializer="glorot_uniform",
        score_mod=None,
        mask_mod=None,
        attention="multi_head",
        attention_options=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        utils.check_choice("attention", attention, tuple(ATTENTION_KINDS))
        if attention_options is not None and not isinstance(
            attention_options, dict
        ):
            raise ValueError(
                "`attention_options` must be a dict of the attention "
                f"layer's arguments. Received: {attention_options!r}"
            )
        check_options(attention, attention_options or {})
        _check_block_arguments(
            num_heads,
            intermediate_dim,
            dropout,
            norm_first,
            layer_norm_epsilon,
            key_dim,
            num_key_value_heads,
            rotary_max_wavelength,
            chunk_size,
        )
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.norm_first = norm_first
        self.layer_norm_epsilon = layer_norm_epsilon
        # Kept as a config: each attention builds a score layer of its own.
        self.score = scores.serialize(
            scores.get(score, dtype=self.dtype_policy)
        )
        self.key_dim = key_dim
        self.num_key_value_heads = num_key_value_heads
        self.rotary_max_wavelength = rotary_max_wavelength
        self.chunk_size = chunk_size
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # Self-attention's modifiers; a stack shares them between blocks.
        self.score_mod = mods.get(score_mod, mods.ScoreMod)
        self.mask_mod = mods.get(mask_mod, mods.MaskMod)
        self.attention = attention
        self.attention_options = dict(attention_options or {})
        self.supports_masking = True

    def _attention(self, hidden_dim, name, self_attention=True):
        """The self-attention of the block's kind, or the (multi-head)
        cross-attention."""
        key_dim = self.key_dim or max(hidden_dim // self.num_heads, 1)
        score = scores.get(self.score, dtype=self.dtype_policy)
        arguments = dict(
            dropout=self.dropout,
            kernel_initializer=utils.serialize(self.kernel_initializer),
            # The default score is every kind's own; another is passed on.
            score=None if _is_default_score(score) else score,
            num_key_value_heads=self.num_key_value_heads,
            chunk_size=self.chunk_size,
        )
        kind = self.attention if self_attention else "multi_head"
        if self_attention:
            # Positions (rotary, modifiers) are those of a sequence
            # attending to itself: self-attention only.
            arguments.update(
                rotary_max_wavelength=self.rotary_max_wavelength,
                score_mod=self.score_mod,
                mask_mod=self.mask_mod,
                **self.attention_options,
            )
        arguments = self_attention_arguments(kind, key_dim, arguments)
        return ATTENTION_KINDS[kind](
            self.num_heads, key_dim, name=name, dtype=self.dtype_policy,
            **arguments,
        )  # fmt: skip

    def _norm(self, inputs_shape, name):
        norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name=name, dtype=self.dtype_policy
        )
        norm.build(inputs_shape)
        return norm

    def _build_feed_forward(self, inputs_shape):
        self.feed_forward = FeedForward(
            self.intermediate_dim,
            self.activation,
            self.dropout,
            utils.serialize(self.kernel_initializer),
            name="feed_forward",
            dtype=self.dtype_policy,
        )
        self.feed_forward.build(inputs_shape)
        self.feed_forward_norm = self._norm(inputs_shape, "feed_forward_norm")
        self.dropout_layer = Dropout(self.dropout, dtype=self.dtype_policy)

    def _residual(self, x, sublayer, norm, training):
        """Apply `sublayer` with a residual connection and a layer norm.

        `sublayer(h)` returns the new features, or a tuple whose first item
        they are (the rest, e.g. weights and cache, is returned as is).
        """
        result = sublayer(norm(x) if self.norm_first else x)
        extra = ()
        if isinstance(result, tuple):
            result, *extra = result
        x = x + self.dropout_layer(result, training=training)
        return (x if self.norm_first else norm(x)), tuple(extra)

    def _check_call(self, inputs, mask, memory=None, memory_mask=None):
        """Raise a `ValueError` naming a call argument of the wrong shape."""
        batch, length = inputs.shape[0], inputs.shape[1]
        width = self.feed_forward_norm.gamma.shape[-1]  # built on inputs
        utils.check_shape("inputs", inputs, (None, None, width))
        utils.check_shape("mask", mask, (batch, length))
        if memory is not None:
            utils.check_shape("encoder_outputs", memory, (batch, None, None))
            utils.check_shape(
                "encoder_outputs_mask", memory_mask, (batch, memory.shape[1])
            )

    def _feed_forward(self, x, training):
        return self._residual(
            x,
            lambda h: self.feed_forward(h, training=training),
            self.feed_forward_norm,
            training,
        )[0]

    def compute_output_shape(self, inputs_shape, *args, **kwargs):
        return inputs_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "norm_first": self.norm_first,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "score": self.score,
            "key_dim": self.key_dim,
            "num_key_value_heads": self.num_key_value_heads,
            "rotary_max_wavelength": self.rotary_max_wavelength,
            "chunk_size": self.chunk_size,
            "kernel_initializer": utils.serialize(self.kernel_initializer),
            "score_mod": mods.serialize(self.score_mod),
            "mask_mod": mods.serialize(self.mask_mod),
            "attention": self.attention,
            "attention_options": serialize_options(self.attention_options),
        }


def _is_default_score(score):
    """Whether `score` is the plain scaled dot product, `1 / √D`."""
    return type(score) is scores.ScaledDot and score.scale is None


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerEncoderBlock(_Block):
    r"""Transformer encoder block: self-attention, then feed-forward.

    $h = x + \operatorname{MHA}(x, x)$, $y = h + \operatorname{FFN}(h)$, each
    with dropout and a layer norm (after the residual by default, before the
    sublayer with `norm_first=True`). Padded positions (mask from
    `Embedding(mask_zero=True)` or `mask`) are never attended to, so they do
    not change the outputs of real positions.

    Args:
        num_heads: attention heads `H`.
        intermediate_dim: hidden size of the feed-forward network.
        dropout: dropout rate everywhere. Defaults to `0.0`.
        activation: of the feed-forward network. Defaults to `"relu"`.
        norm_first: pre-norm if `True`, post-norm otherwise. Defaults to
            `False`.
        layer_norm_epsilon: Defaults to `1e-5`.
        score: score of the attention. Defaults to `"scaled_dot"`.
        key_dim: head size `D`. Defaults to $d / H$.
        num_key_value_heads, rotary_max_wavelength, chunk_size: see
            `MultiHeadAttention` (rotary embedding applies to self-attention
            only). Default to `None`.
        kernel_initializer: Defaults to `"glorot_uniform"`.
        score_mod, mask_mod: `keras_attention.mods` modifiers of the
            self-attention (see `MultiHeadAttention`). Default to `None`.
        attention: the self-attention: `"multi_head"`
            (`MultiHeadAttention`), `"latent"`
            (`MultiHeadLatentAttention`, latent of `4 · D` by default),
            `"differential"` (`DifferentialAttention`; a stack sets each
            block's `layer_index`) or `"linear"` (`LinearAttention`).
            Cross-attention stays multi-head. Defaults to `"multi_head"`.
        attention_options: dict of the self-attention layer's own
            arguments, e.g. `{"kv_latent_dim": 64, "rotary_dim": 16}` or
            `{"use_sinks": True, "qk_norm": "rms"}`. Defaults to `None`.

    Call arguments:
        inputs: `(B, T, d)`.
        mask: optional bool `(B, T)`, `True` for real tokens.
        attention_mask: optional bool `(B, T, T)`.
        use_causal_mask: whether position $i$ only sees $j \le i$.
        return_attention_scores: whether to also return the weights.
        training: whether dropout is active.
        segment_ids: optional int `(B, T)` for a `mods.DocumentMask`.
        attention_bias: optional float `(B, H, T, T)`-broadcastable.

    Returns:
        `(B, T, d)`, and the weights `(B, H, T, T)` if
        `return_attention_scores`.

    Examples:
        >>> import numpy as np
        >>> block = TransformerEncoderBlock(num_heads=2, intermediate_dim=16)
        >>> tuple(block(np.ones((2, 5, 8))).shape)
        (2, 5, 8)

    Reference:
        Vaswani et al., 2017; Xiong et al., 2020 (pre-norm).
    """

    def build(self, inputs_shape):
        utils.check_shape("inputs", inputs_shape, (None, None, None))
        self.self_attention = self._attention(
            inputs_shape[-1], "self_attention"
        )
        self.self_attention.build(inputs_shape, inputs_shape)
        self.self_attention_norm = self._norm(
            inputs_shape, "self_attention_norm"
        )
        self._build_feed_forward(inputs_shape)

    def call(
        self,
        inputs,
        mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        segment_ids=None,
        attention_bias=None,
    ):
        self._check_call(inputs, mask)
        inputs = attention_ops.hide_unseen(inputs, mask)  # padding: no NaN
        x, extra = self._residual(
            inputs,
            lambda h: self.self_attention(
                h,
                h,
                query_mask=mask,
                value_mask=mask,
                attention_mask=attention_mask,
                use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores,
                training=training,
                segment_ids=segment_ids,
                attention_bias=attention_bias,
            ),
            self.self_attention_norm,
            training,
        )
        x = self._feed_forward(x, training)
        return utils.pack_outputs(x, *extra)

    def compute_output_spec(
        self, inputs, return_attention_scores=False, **kwargs
    ):
        output = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        weights = None
        if return_attention_scores:
            batch, length = inputs.shape[:2]
            shape = (batch, self.num_heads, length, length)
            weights = keras.KerasTensor(shape, dtype="float32")
        return utils.pack_outputs(output, weights)


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerDecoderBlock(_Block):
    r"""Transformer decoder block: causal self-attention, cross-attention, FFN.

    $h = x + \operatorname{MHA}_\text{causal}(x, x)$, then (when
    `encoder_outputs` is given)
    $h = h + \operatorname{MHA}(h, \mathtt{encoder\_outputs})$, then
    $y = h + \operatorname{FFN}(h)$, each with dropout and a layer norm (pre-
    or post-norm as `norm_first`).

    For fast decoding pass a self-attention `cache` `(B, 2, T_max, H_kv, D)`
    and `cache_update_index`: the new tokens' keys/values are written at the
    index, the tokens attend to everything before them, and the updated
    cache is returned (step by step == full sequence). The cross-attention
    keys/values of the encoder outputs do not change while decoding: compute
    them once with `compute_cross_attention_cache(encoder_outputs)` and pass
    them as `cross_attention_cache` at every step.

    Args:
        Same as `TransformerEncoderBlock`.

    Call arguments:
        inputs: `(B, T, d)`.
        encoder_outputs: optional `(B, S, d_e)`; adds cross-attention.
        mask: optional bool `(B, T)` (filled from Keras masks).
        encoder_outputs_mask: optional bool `(B, S)` (filled from Keras
            masks).
        attention_mask: optional bool `(B, T, T)` for the self-attention.
        cache: optional `(B, 2, T_max, H_kv, D)` self-attention cache.
        cache_update_index: int or scalar tensor, the position of `inputs`.
        cross_attention_cache: optional `(B, 2, S, H_kv, D)` from
            `compute_cross_attention_cache`, used instead of projecting
            `encoder_outputs` again.
        return_attention_scores: whether to also return the weights.
        training: whether dropout is active.
        segment_ids: optional int `(B, T_max)` for a `mods.DocumentMask`
            of the self-attention.
        attention_bias: optional float, added to the self-attention logits.

    Returns:
        `(B, T, d)`; then if `return_attention_scores` a dict with
        `"self_attention"` `(B, H, T, T')` (`None` from a linear
        attention's recurrent state) and, with `encoder_outputs`,
        `"cross_attention"` `(B, H, T, S)`; then the cache if one was passed.

    Examples:
        >>> import numpy as np
        >>> block = TransformerDecoderBlock(num_heads=2, intermediate_dim=16)
        >>> tuple(block(np.ones((2, 5, 8)), np.ones((2, 7, 8))).shape)
        (2, 5, 8)

    Reference:
        Vaswani et al., 2017, "Attention Is All You Need".
    """

    def __init__(self, num_heads, intermediate_dim, **kwargs):
        # No autocast of `cache` (a linear attention's float32 state would
        # become float16 under mixed precision); `call` casts the inputs.
        kwargs.setdefault("autocast", False)
        super().__init__(num_heads, intermediate_dim, **kwargs)

    def build(self, inputs_shape, encoder_outputs_shape=None):
        utils.check_shape("inputs", inputs_shape, (None, None, None))
        utils.check_shape(
            "encoder_outputs", encoder_outputs_shape, (None, None, None)
        )
        self.self_attention = self._attention(
            inputs_shape[-1], "self_attention"
        )
        self.self_attention.build(inputs_shape, inputs_shape)
        self.self_attention_norm = self._norm(
            inputs_shape, "self_attention_norm"
        )
        self.cross_attention = None
        if encoder_outputs_shape is not None:
            self.cross_attention = self._attention(
                inputs_shape[-1], "cross_attention", self_attention=False
            )
            self.cross_attention.build(inputs_shape, encoder_outputs_shape)
            self.cross_attention_norm = self._norm(
                inputs_shape, "cross_attention_norm"
            )
        self._build_feed_forward(inputs_shape)

    def call(
        self,
        inputs,
        encoder_outputs=None,
        mask=None,
        encoder_outputs_mask=None,
        attention_mask=None,
        cache=None,
        cache_update_index=None,
        cross_attention_cache=None,
        return_attention_scores=False,
        training=None,
        segment_ids=None,
        attention_bias=None,
    ):
        self._check_encoder_outputs(encoder_outputs)
        self._check_call(inputs, mask, encoder_outputs, encoder_outputs_mask)
        inputs, encoder_outputs, attention_bias = utils.cast_inputs(
            self, inputs, encoder_outputs, attention_bias
        )
        inputs = attention_ops.hide_unseen(inputs, mask)  # padding: no NaN
        # A recurrent state (linear attention) keeps no keys to weigh.
        self_scores = return_attention_scores and (
            cache is None or self.self_attention.scores_with_cache
        )
        x, extra = self._residual(
            inputs,
            lambda h: self.self_attention(
                h,
                h,
                query_mask=mask,
                value_mask=None if cache is not None else mask,
                attention_mask=attention_mask,
                use_causal_mask=True,
                return_attention_scores=self_scores,
                training=training,
                cache=cache,
                cache_update_index=cache_update_index,
                segment_ids=segment_ids,
                attention_bias=attention_bias,
            ),
            self.self_attention_norm,
            training,
        )
        weights = {"self_attention": None}
        if self_scores:
            weights["self_attention"], *extra = extra
        cache = extra[0] if cache is not None else None
        if encoder_outputs is not None:
            x, cross = self._residual(
                x,
                lambda h: self.cross_attention(
                    h,
                    encoder_outputs,
                    query_mask=mask,
                    value_mask=encoder_outputs_mask,
                    return_attention_scores=return_attention_scores,
                    training=training,
                    cache=cross_attention_cache,
                ),
                self.cross_attention_norm,
                training,
            )
            weights["cross_attention"] = cross[0] if cross else None
        x = self._feed_forward(x, training)
        return utils.pack_outputs(
            x, weights if return_attention_scores else None, cache
        )

    def _check_encoder_outputs(self, encoder_outputs):
        if (encoder_outputs is None) != (self.cross_attention is None):
            built = "with" if self.cross_attention else "without"
            raise ValueError(
                "Call the block with `encoder_outputs` always or never (it "
                f"was built {built} them). Received: encoder_outputs="
                f"{None if encoder_outputs is None else encoder_outputs.shape}"
            )

    def initial_cache(self, batch_size, max_length):
        """The self-attention's empty decoding cache (its `initial_cache`).

        Args:
            batch_size: int (or scalar int tensor) `B`.
            max_length: int `T_max`.

        Returns:
            The `cache` of `call`.
        """
        return self.self_attention.initial_cache(batch_size, max_length)

    def compute_cross_attention_cache(self, encoder_outputs):
        """Cross-attention keys/values `(B, 2, S, H_kv, D)`, once per source.

        Args:
            encoder_outputs: `(B, S, d_e)`.

        Returns:
            The `cross_attention_cache` of `call`.
        """
        if self.cross_attention is None:
            raise ValueError(
                "This block has no cross-attention (it was built without "
                "`encoder_outputs`)."
            )
        return self.cross_attention.compute_cache(encoder_outputs)

    def compute_output_spec(
        self,
        inputs,
        encoder_outputs=None,
        cache=None,
        return_attention_scores=False,
        **kwargs,
    ):
        output = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        batch, length = inputs.shape[:2]
        weights = None
        if return_attention_scores:
            self_weights = None
            if cache is None or self.self_attention.scores_with_cache:
                self_weights = self.self_attention.compute_output_spec(
                    inputs, inputs, return_attention_scores=True, cache=cache
                )[1]  # (B, H, T, T or T_max): as the layer's cache says
            weights = {"self_attention": self_weights}
            if encoder_outputs is not None:
                weights["cross_attention"] = keras.KerasTensor(
                    (batch, self.num_heads, length, encoder_outputs.shape[1]),
                    dtype="float32",
                )
        if cache is not None:
            cache = keras.KerasTensor(cache.shape, dtype=cache.dtype)
        return utils.pack_outputs(output, weights, cache)
