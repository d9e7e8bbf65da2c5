"""Single-head attention with any score, and attention pooling."""

import keras
from keras import ops

from keras_attention import kernel
from keras_attention import mods
from keras_attention import ops as attention_ops
from keras_attention import scores
from keras_attention import utils
from keras_attention.layers import inputs
from keras_attention.layers.dropout import Dropout


@keras.saving.register_keras_serializable(package="keras_attention")
class Attention(keras.layers.Layer):
    r"""Single-head attention with any scoring function.

    The three-step recipe: scores $e_{ij} = a(q_i, k_j)$, weights
    $\alpha_{ij} = \operatorname{softmax}_j(e_{ij} / \mathtt{temperature})$
    over the keys query $i$ may see, output $o_i = \sum_j \alpha_{ij} v_j$.

    Masks attached by Keras (e.g. from `Embedding(mask_zero=True)`) are used
    automatically. A query that may see no key gets zero weights and a zero
    output.

    Args:
        score: a score name (see `keras_attention.scores`), config dict or
            score layer. Defaults to `"scaled_dot"`.
        dropout: dropout rate on the attention weights. Defaults to `0.0`.
        temperature: divides the scores before the softmax; `< 1` sharpens,
            `> 1` flattens. Defaults to `1.0`.
        seed: seed of the dropout. Defaults to `None`.
        score_mod: optional `keras_attention.mods.ScoreMod`, applied to the
            scores (after the temperature). Defaults to `None`.
        mask_mod: optional `keras_attention.mods.MaskMod`. Defaults to
            `None`.

    Call arguments:
        query: `(B, Tq, dq)`.
        value: `(B, Tk, dv)`.
        key: optional `(B, Tk, dk)`; `value` is used when omitted.
        query_mask: optional bool `(B, Tq)`.
        value_mask: optional bool `(B, Tk)`.
        key_mask: optional bool `(B, Tk)`; `value_mask` is used when omitted.
        attention_mask: optional bool `(B, Tq, Tk)`, `True` = may attend.
        use_causal_mask: whether query $i$ only sees keys $j \le i$.
        return_attention_scores: whether to also return the weights.
        training: whether dropout is active.
        attention_bias: optional float `(B, Tq, Tk)`-broadcastable, added
            to the logits.
        segment_ids: optional int `(B, T)` for a `DocumentMask`.

    Returns:
        `(B, Tq, dv)`, and the weights `(B, Tq, Tk)` if
        `return_attention_scores`.

    Examples:
        >>> import numpy as np
        >>> layer = Attention(score="general")
        >>> tuple(layer(np.ones((2, 3, 4)), np.ones((2, 5, 6))).shape)
        (2, 3, 6)

    Reference:
        Bahdanau et al., 2015; Luong et al., 2015; Vaswani et al., 2017.
    """

    def __init__(
        self,
        score="scaled_dot",
        dropout=0.0,
        temperature=1.0,
        seed=None,
        score_mod=None,
        mask_mod=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        utils.check_rate("dropout", dropout)
        utils.check_positive_number("temperature", temperature)
        utils.check_number("seed", seed, integer=True, allow_none=True)
        self.score = scores.get(score, dtype=self.dtype_policy)
        self.score_mod = mods.get(score_mod, mods.ScoreMod)
        self.mask_mod = mods.get(mask_mod, mods.MaskMod)
        self.dropout = dropout
        self.temperature = temperature
        self.seed = seed
        self.dropout_layer = Dropout(
            dropout, seed=seed, dtype=self.dtype_policy
        )
        self.supports_masking = True

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        if len(query_shape) != 3 or len(value_shape) != 3:
            raise ValueError(
                "`Attention` expects `query` (B, Tq, dq) and `value` "
                f"(B, Tk, dv). Received: query.shape={tuple(query_shape)}, "
                f"value.shape={tuple(value_shape)}"
            )
        if tuple(key_shape[:2]) != tuple(value_shape[:2]) and None not in (
            *key_shape[:2],
            *value_shape[:2],
        ):
            raise ValueError(
                "`key` and `value` must have the same batch and length. "
                f"Received: key.shape={tuple(key_shape)}, "
                f"value.shape={tuple(value_shape)}"
            )
        if not self.score.built:
            self.score.build(query_shape, key_shape)
        if self.score_mod is not None and not self.score_mod.built:
            self.score_mod.build((1,))  # one head
        self._input_dims = (query_shape[-1], key_shape[-1])
        self.built = True

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        attention_bias=None,
        segment_ids=None,
    ):
        key = value if key is None else key
        inputs.check_call_shapes(
            query, value, key, attention_mask, query_mask=query_mask,
            value_mask=value_mask, key_mask=key_mask,
        )  # fmt: skip
        utils.check_shape("query", query, (None, None, self._input_dims[0]))
        utils.check_shape("key", key, (None, None, self._input_dims[1]))
        key_mask = attention_ops.and_masks(value_mask, key_mask)
        query, value, key = inputs.prepare(
            self.compute_dtype, query, value, key, query_mask, key_mask,
            attention_mask, cached=False,
        )  # fmt: skip
        output, weights = kernel.attention(
            query, key, value, score=self.score, scale=1.0 / self.temperature,
            query_mask=query_mask, key_mask=key_mask,
            attention_mask=attention_mask, use_causal_mask=use_causal_mask,
            score_mod=self.score_mod, mask_mod=self.mask_mod,
            attention_bias=attention_bias,
            context={} if segment_ids is None else {"segment_ids": segment_ids},
            dropout=self.dropout_layer, training=training,
            return_weights=return_attention_scores,
        )  # fmt: skip
        return utils.pack_outputs(output, weights)

    def compute_output_shape(
        self, query_shape, value_shape, key_shape=None, **kwargs
    ):
        return tuple(query_shape[:-1]) + (value_shape[-1],)

    def get_config(self):
        return {
            **super().get_config(),
            "score": scores.serialize(self.score),
            "dropout": self.dropout,
            "temperature": self.temperature,
            "seed": self.seed,
            "score_mod": mods.serialize(self.score_mod),
            "mask_mod": mods.serialize(self.mask_mod),
        }


@keras.saving.register_keras_serializable(package="keras_attention")
class AttentionPooling(keras.layers.Layer):
    r"""Sequence to vector: a learned query attends over the sequence.

    $\alpha = \operatorname{softmax}_t(a(w, x_t))$, $o = \sum_t \alpha_t x_t$,
    with $w$ a trainable query vector: a weighted average of the time steps
    whose weights the model learns (a classification head, "attention
    pooling").

    Args:
        score: a score name, config dict or score layer. Defaults to
            `"additive"`.
        dropout: dropout rate on the weights. Defaults to `0.0`.
        seed: seed of the dropout. Defaults to `None`.

    Call arguments:
        inputs: `(B, T, D)`.
        mask: optional bool `(B, T)`; filled by Keras from an upstream
            `Embedding(mask_zero=True)`.
        return_attention_scores: whether to also return the weights.
        training: whether dropout is active.

    Returns:
        `(B, D)`, and the weights `(B, T)` if `return_attention_scores`.

    Examples:
        >>> import numpy as np
        >>> tuple(AttentionPooling()(np.ones((2, 5, 8))).shape)
        (2, 8)

    Reference:
        Yang et al., 2016, "Hierarchical Attention Networks for Document
        Classification".
    """

    def __init__(self, score="additive", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.attention = Attention(
            score=score,
            dropout=dropout,
            seed=seed,
            name="attention",
            dtype=self.dtype_policy,
        )
        self.supports_masking = True

    def build(self, inputs_shape):
        if len(inputs_shape) != 3:
            raise ValueError(
                "`AttentionPooling` expects inputs (B, T, D). "
                f"Received: inputs.shape={tuple(inputs_shape)}"
            )
        self.query = self.add_weight(
            name="query", shape=(1, 1, inputs_shape[-1]), initializer="ones"
        )
        self.attention.build((None, 1, inputs_shape[-1]), inputs_shape)

    def call(
        self, inputs, mask=None, return_attention_scores=False, training=None
    ):
        query = ops.cast(self.query, inputs.dtype)
        query = ops.broadcast_to(
            query, (ops.shape(inputs)[0], 1, ops.shape(inputs)[-1])
        )  # (B, 1, D)
        output, weights = self.attention(
            query,
            inputs,
            value_mask=mask,
            return_attention_scores=True,
            training=training,
        )  # (B, 1, D), (B, 1, T)
        return utils.pack_outputs(
            output[:, 0], weights[:, 0] if return_attention_scores else None
        )

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, inputs_shape):
        return (inputs_shape[0], inputs_shape[-1])

    def get_config(self):
        config = super().get_config()
        attention = self.attention
        config.update(
            score=scores.serialize(attention.score),
            dropout=attention.dropout,
            seed=attention.seed,
        )
        return config
