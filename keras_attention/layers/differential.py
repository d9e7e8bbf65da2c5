"""Differential attention: the difference of two softmax maps."""

import math

import keras
from keras import ops

from keras_attention import ops as attention_ops
from keras_attention import scores
from keras_attention import utils
from keras_attention.layers.multi_head import MultiHeadAttention

# MultiHeadAttention's options that differential attention fixes itself.
_FIXED = {"score": "scaled_dot", "use_sinks": False, "qk_norm": None}


def lambda_init(layer_index):
    r"""$\lambda_\mathrm{init} = 0.8 - 0.6 \exp(-0.3 (l - 1))$ of layer $l$
    (1-based), Ye et al.'s schedule: 0.2 in the first layer, towards 0.8."""
    return 0.8 - 0.6 * math.exp(-0.3 * (layer_index - 1))


@keras.saving.register_keras_serializable(package="keras_attention")
class DifferentialAttention(MultiHeadAttention):
    r"""Differential attention (the Differential Transformer's).

    Each head splits its queries and keys into halves $Q_1 | Q_2$,
    $K_1 | K_2$ of `key_dim` features and subtracts two attention maps, so
    that attention noise common to both cancels:

    $$
    \begin{aligned}
    A &= \operatorname{softmax}\!\big(Q_1 K_1^\top / \sqrt{D}\big)
       - \lambda \operatorname{softmax}\!\big(Q_2 K_2^\top / \sqrt{D}\big),
    \\
    \lambda &= e^{\lambda_{q1} \cdot \lambda_{k1}}
       - e^{\lambda_{q2} \cdot \lambda_{k2}} + \lambda_\mathrm{init},
    \quad \lambda_\mathrm{init} = 0.8 - 0.6\, e^{-0.3 (l - 1)},
    \\
    \mathrm{head} &= (1 - \lambda_\mathrm{init}) \cdot
       \operatorname{RMSNorm}(A V),
    \end{aligned}
    $$

    with $D$ = `key_dim`, $l$ = `layer_index`, the RMS norm over each
    head's `value_dim` features (epsilon $10^{-5}$, learned gain
    `head_norm` initialised to 1) and the heads concatenated into the
    output projection. Masks (padding, causal, explicit, modifiers) apply
    to both maps. Sublayers follow keras's layout: `query` and `key`
    kernels `(d, H, 2·key_dim)`, `value` `(d, H, value_dim)`,
    `attention_output`; weights `lambda_q1`, `lambda_k1`, `lambda_q2`,
    `lambda_k2` of shape `(key_dim,)` (normal, stddev 0.1). Rotary
    embedding, if asked for, rotates each half on its own.

    Args:
        num_heads: number of heads `H`.
        key_dim: size `D` of each half of a query/key head.
        value_dim: size of each value head. Defaults to `2 · key_dim`.
        layer_index: the layer's depth `l` (1 for the first), which sets
            $\lambda_\mathrm{init}$. Defaults to `1`.
        dropout: dropout rate on both maps. Defaults to `0.0`.
        use_bias: whether the projections have biases. Defaults to `True`.
        **kwargs: other `MultiHeadAttention` arguments (e.g.
            `num_key_value_heads`, `rotary_max_wavelength`, `chunk_size`,
            `score_mod`, `mask_mod`, initializers); `score`, `use_sinks`
            and `qk_norm` are fixed by the design.

    Call arguments:
        Those of `MultiHeadAttention`, including the decoding contract
        (`initial_cache`, `cache`, `cache_update_index`; the cache is
        `(B, 2, T_max, H_kv, 2 · key_dim)`, with `value_dim = 2 · key_dim`).

    Returns:
        The output `(B, T, d)`, then the weights $A$ `(B, H, Tq, Tk)` if
        `return_attention_scores` (rows sum to $1 - \lambda$), then the
        cache if one was passed.

    Example:
        >>> import numpy as np
        >>> layer = DifferentialAttention(num_heads=2, key_dim=4,
        ...                               layer_index=3)
        >>> x = np.ones((1, 5, 16), "float32")
        >>> output, weights = layer(x, x, return_attention_scores=True)
        >>> tuple(output.shape), tuple(weights.shape)
        ((1, 5, 16), (1, 2, 5, 5))
        >>> round(layer.lambda_init, 4)
        0.4707

    Reference:
        Ye et al., 2024, "Differential Transformer" (ICLR 2025).
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        layer_index=1,
        dropout=0.0,
        use_bias=True,
        **kwargs,
    ):
        utils.check_positive_int("key_dim", key_dim)
        utils.check_positive_int("layer_index", layer_index)
        for name, default in _FIXED.items():
            value = kwargs.pop(name, default)
            if value != default:
                raise ValueError(
                    f"`DifferentialAttention` fixes `{name}` (two scaled "
                    f"dot-product maps). Received: {name}={value!r}"
                )
        if kwargs.get("rotary_max_wavelength") is not None:
            utils.check_even("key_dim", key_dim)  # each half is rotated
        self.half_key_dim = key_dim
        super().__init__(
            num_heads, 2 * key_dim, value_dim=value_dim or 2 * key_dim,
            dropout=dropout, use_bias=use_bias,
            score=scores.ScaledDot(1.0 / math.sqrt(key_dim)), **kwargs,
        )  # fmt: skip
        self.layer_index = layer_index
        self.lambda_init = lambda_init(layer_index)

    def _build_extras(self):
        names = ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2")
        for i, name in enumerate(names):
            # One seed each: a seeded initializer repeats its values, and
            # equal pairs would pin lambda to lambda_init.
            seed = None if self.seed is None else self.seed + i
            initializer = keras.initializers.RandomNormal(0.0, 0.1, seed)
            weight = self.add_weight(
                name=name, shape=(self.half_key_dim,), initializer=initializer
            )
            setattr(self, name, weight)
        self.head_norm = self.add_weight(
            name="head_norm", shape=(self._value_dim,), initializer="ones"
        )

    def lambda_value(self):
        r"""$\lambda = e^{\lambda_{q1} \cdot \lambda_{k1}} - e^{\lambda_{q2}
        \cdot \lambda_{k2}} + \lambda_\mathrm{init}$, a float32 scalar."""

        def dot(a, b):
            return ops.sum(ops.cast(a, "float32") * ops.cast(b, "float32"))

        first = ops.exp(dot(self.lambda_q1, self.lambda_k1))
        second = ops.exp(dot(self.lambda_q2, self.lambda_k2))
        return first - second + self.lambda_init

    def _position(self, x, offset, name):
        """Rotary embedding of each half `(B, T, h, 2, D)` on its own."""
        if self.rotary_max_wavelength is None:
            return x
        shape = ops.shape(x)
        halves = ops.reshape(x, (*shape[:-1], 2, self.half_key_dim))
        positions = ops.arange(shape[1]) + offset
        rotated = attention_ops.rotary_embedding(
            halves,
            ops.reshape(positions, (-1, 1, 1)),
            self.rotary_max_wavelength,
        )
        return ops.reshape(rotated, shape)

    def _attend(self, query, key, value, cache, **options):
        """Two softmax maps of the query/key halves over the same values,
        subtracted, then the per-head RMS norm."""
        query_1, query_2 = ops.split(query, 2, axis=-1)
        key_1, key_2 = ops.split(key, 2, axis=-1)
        output_1, weights_1 = self._attention(query_1, key_1, value, **options)
        output_2, weights_2 = self._attention(query_2, key_2, value, **options)
        lambda_ = self.lambda_value()
        output = ops.cast(output_1, "float32") - lambda_ * ops.cast(
            output_2, "float32"
        )
        output = attention_ops.rms_normalize(output, self.head_norm, 1e-5)
        output = ops.cast(output * (1.0 - self.lambda_init), value.dtype)
        weights = None
        if weights_1 is not None:
            weights = weights_1 - lambda_ * weights_2
        return output, weights, cache

    def get_config(self):
        config = super().get_config()
        for name in _FIXED:
            config.pop(name)
        config.update(key_dim=self.half_key_dim, layer_index=self.layer_index)
        return config
