"""Positional encodings: sinusoidal, learned, token + position, rotary."""

import math
from typing import NamedTuple

import keras
from keras import ops

from keras_attention import mods
from keras_attention import ops as attention_ops
from keras_attention import utils


@keras.saving.register_keras_serializable(package="keras_attention")
class SinusoidalPositionalEncoding(keras.layers.Layer):
    r"""The sinusoidal position encoding of Vaswani et al.

    $\mathrm{PE}(p, 2i) = \sin(p / \lambda^{2i/d})$,
    $\mathrm{PE}(p, 2i+1) = \cos(p / \lambda^{2i/d})$ with
    $\lambda = \mathtt{max\_wavelength}$: each pair of features is a clock of
    its own frequency, so a relative offset is a linear function of the
    encoding. Returns the encoding (to be added to the embeddings), with the
    same values as `keras_hub.layers.SinePositionEncoding`.

    Args:
        max_wavelength: the longest wavelength $\lambda$. Defaults to `10000`.

    Call arguments:
        inputs: `(B, T, d)` (only the shape is used).
        start_index: position of the first step, e.g. the cache index while
            decoding. Defaults to `0`.

    Returns:
        `(B, T, d)` encodings of positions
        $\mathtt{start\_index}, \dots, \mathtt{start\_index} + T - 1$.

    Examples:
        >>> import numpy as np
        >>> tuple(SinusoidalPositionalEncoding()(np.zeros((2, 5, 8))).shape)
        (2, 5, 8)

    Reference:
        Vaswani et al., 2017, "Attention Is All You Need", section 3.5.
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        utils.check_positive_number("max_wavelength", max_wavelength)
        self.max_wavelength = max_wavelength
        self.built = True

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        length, dim = shape[-2], shape[-1]
        positions = ops.cast(ops.arange(length) + start_index, "float32")
        # Feature 2i and 2i+1 share the frequency λ^(-2i/d).
        exponents = ops.cast(2 * (ops.arange(dim) // 2), "float32") / dim
        frequencies = ops.power(1.0 / self.max_wavelength, exponents)  # (d,)
        angles = ops.expand_dims(positions, 1) * frequencies  # (T, d)
        is_cosine = ops.equal(ops.arange(dim) % 2, 1)  # odd features
        encoding = ops.where(is_cosine, ops.cos(angles), ops.sin(angles))
        encoding = ops.cast(encoding, self.compute_dtype)
        return ops.broadcast_to(encoding, shape)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


def _check_length(length, max_length, start_index=0):
    """Raise unless positions `start_index .. start_index + length - 1` are
    below `max_length` (where both are known when the call is traced)."""
    if not isinstance(start_index, int):
        start_index = 0  # a tensor (decoding): only the length is known
    if start_index < 0:
        raise ValueError(
            "Invalid value for argument `start_index`: expected a position "
            f">= 0. Received: start_index={start_index}"
        )
    if isinstance(length, int) and start_index + length > max_length:
        raise ValueError(
            "The sequence is longer than `max_length`. Received: sequence "
            f"length={length}, start_index={start_index}, "
            f"max_length={max_length}"
        )


@keras.saving.register_keras_serializable(package="keras_attention")
class LearnedPositionalEmbedding(keras.layers.Layer):
    r"""A trainable vector per position: $\mathrm{PE}(p) = W[p]$.

    Args:
        max_length: the longest sequence (the number of rows of $W$).
        initializer: initializer of $W$. Defaults to `"glorot_uniform"`.

    Call arguments:
        inputs: `(B, T, d)` (only the shape is used), `T <= max_length`.
        start_index: position of the first step. Defaults to `0`.

    Returns:
        `(B, T, d)` embeddings of positions
        $\mathtt{start\_index}, \dots, \mathtt{start\_index} + T - 1$.

    Examples:
        >>> import numpy as np
        >>> layer = LearnedPositionalEmbedding(max_length=16)
        >>> tuple(layer(np.zeros((2, 5, 8))).shape)
        (2, 5, 8)

    Reference:
        Gehring et al., 2017, "Convolutional Sequence to Sequence Learning";
        Devlin et al., 2019 (BERT).
    """

    def __init__(self, max_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        utils.check_positive_int("max_length", max_length)
        self.max_length = max_length
        self.initializer = keras.initializers.get(initializer)

    def build(self, inputs_shape):
        _check_length(inputs_shape[-2], self.max_length)
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.max_length, inputs_shape[-1]),
            initializer=self.initializer,
        )

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        _check_length(shape[-2], self.max_length, start_index)
        embeddings = ops.convert_to_tensor(self.embeddings)  # not a Variable
        rows = ops.slice(
            embeddings, (start_index, 0), (shape[-2], shape[-1])
        )  # (T, d)
        return ops.broadcast_to(ops.cast(rows, self.compute_dtype), shape)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        return {
            **super().get_config(),
            "max_length": self.max_length,
            "initializer": utils.serialize(self.initializer),
        }


@keras.saving.register_keras_serializable(package="keras_attention")
class TokenAndPositionEmbedding(keras.layers.Layer):
    r"""Token embedding plus position encoding, the input of a Transformer.

    $x_t = E[\mathrm{token}_t] \cdot \sqrt{d} + \mathrm{PE}(t)$; the $\sqrt{d}$
    scaling (Vaswani et al., section 3.4) keeps the token embeddings from
    being drowned by the position signal. With `mask_zero=True`, token id 0
    is padding and the mask is passed on to the next layers.

    Args:
        vocab_size: number of token ids `V`.
        embedding_dim: size `d` of the embeddings.
        max_length: the longest sequence; required for
            `positional="learned"`. Defaults to `None`.
        positional: `"sinusoidal"`, `"learned"` or `None` (no position).
            Defaults to `"sinusoidal"`.
        mask_zero: whether id 0 is padding. Defaults to `True`.
        scale_embeddings: whether to multiply the token embeddings by
            $\sqrt{d}$. Defaults to `True`.
        max_wavelength: of the sinusoidal encoding. Defaults to `10000`.
        embeddings_initializer: of the token embedding. Defaults to
            `"uniform"`.

    Call arguments:
        inputs: int `(B, T)`.
        start_index: position of the first token. Defaults to `0`.

    Returns:
        `(B, T, d)`, with the mask `inputs != 0` if `mask_zero`.

    Examples:
        >>> import numpy as np
        >>> layer = TokenAndPositionEmbedding(vocab_size=10, embedding_dim=4)
        >>> tuple(layer(np.array([[3, 4, 0]])).shape)
        (1, 3, 4)

    Reference:
        Vaswani et al., 2017, "Attention Is All You Need".
    """

    positionals = ("sinusoidal", "learned", None)

    def __init__(
        self,
        vocab_size,
        embedding_dim,
        max_length=None,
        positional="sinusoidal",
        mask_zero=True,
        scale_embeddings=True,
        max_wavelength=10000,
        embeddings_initializer="uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        utils.check_positive_int("vocab_size", vocab_size)
        utils.check_positive_int("embedding_dim", embedding_dim)
        utils.check_positive_int("max_length", max_length, allow_none=True)
        utils.check_positive_number("max_wavelength", max_wavelength)
        utils.check_choice("positional", positional, self.positionals)
        if positional == "learned" and max_length is None:
            raise ValueError(
                '`positional="learned"` needs `max_length`. '
                f"Received: {max_length=}"
            )
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.max_length = max_length
        self.positional = positional
        self.mask_zero = mask_zero
        self.scale_embeddings = scale_embeddings
        self.max_wavelength = max_wavelength
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer
        )
        self.token_embedding = keras.layers.Embedding(
            vocab_size,
            embedding_dim,
            embeddings_initializer=self.embeddings_initializer,
            name="token_embedding",
            dtype=self.dtype_policy,
        )
        self.position_embedding = None
        if positional == "learned":
            self.position_embedding = LearnedPositionalEmbedding(
                max_length, name="position_embedding", dtype=self.dtype_policy
            )
        elif positional == "sinusoidal":
            self.position_embedding = SinusoidalPositionalEncoding(
                max_wavelength,
                name="position_embedding",
                dtype=self.dtype_policy,
            )
        self.supports_masking = mask_zero

    def build(self, inputs_shape):
        if self.max_length is not None:
            _check_length(inputs_shape[-1], self.max_length)
        self.token_embedding.build(inputs_shape)
        if self.position_embedding is not None:
            self.position_embedding.build(
                tuple(inputs_shape) + (self.embedding_dim,)
            )

    def call(self, inputs, start_index=0):
        utils.check_token_ids("inputs", inputs, self.vocab_size)
        embeddings = self.token_embedding(inputs)  # (B, T, d)
        if self.scale_embeddings:
            scale = math.sqrt(self.embedding_dim)
            embeddings = embeddings * ops.cast(scale, embeddings.dtype)
        if self.position_embedding is not None:
            embeddings = embeddings + self.position_embedding(
                embeddings, start_index=start_index
            )
        return embeddings

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape) + (self.embedding_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "max_length": self.max_length,
            "positional": self.positional,
            "mask_zero": self.mask_zero,
            "scale_embeddings": self.scale_embeddings,
            "max_wavelength": self.max_wavelength,
            "embeddings_initializer": utils.serialize(
                self.embeddings_initializer
            ),
        }


@keras.saving.register_keras_serializable(package="keras_attention")
class RotaryEmbedding(keras.layers.Layer):
    r"""Rotary position embedding (RoPE) of `(B, T, H, D)` or `(B, T, D)`.

    Rotates each feature pair $(x_i, x_{i+D/2})$ of the vector at position
    $p$ by the angle $p \cdot \lambda^{-2i/D}$, so that
    $\langle \operatorname{RoPE}(q, m), \operatorname{RoPE}(k, n) \rangle$
    depends only on $m - n$ (see `keras_attention.ops.rotary_embedding`).
    Same values as `keras_hub.layers.RotaryEmbedding`.

    Args:
        max_wavelength: the longest wavelength $\lambda$. Defaults to `10000`.

    Call arguments:
        inputs: `(B, T, H, D)` or `(B, T, D)`, `D` even.
        start_index: position of the first step. Defaults to `0`.

    Returns:
        The rotated inputs, same shape. The Keras mask of `inputs` (e.g.
        from an `Embedding(mask_zero=True)` upstream) passes through.

    Examples:
        >>> import numpy as np
        >>> tuple(RotaryEmbedding()(np.ones((2, 5, 4, 8))).shape)
        (2, 5, 4, 8)

    Reference:
        Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary Position
        Embedding".
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        utils.check_positive_number("max_wavelength", max_wavelength)
        self.max_wavelength = max_wavelength
        self.supports_masking = True  # rotating keeps the positions' mask
        self.built = True

    def call(self, inputs, start_index=0):
        if len(inputs.shape) not in (3, 4):
            raise ValueError(
                "`RotaryEmbedding` expects inputs (B, T, D) or (B, T, H, D). "
                f"Received: inputs.shape={tuple(inputs.shape)}"
            )
        positions = ops.arange(ops.shape(inputs)[1]) + start_index  # (T,)
        for _ in range(len(inputs.shape) - 3):
            positions = ops.expand_dims(positions, 1)  # (T, 1): (B, T, H, D)
        return attention_ops.rotary_embedding(
            inputs, positions, self.max_wavelength
        )

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


# === Positional schemes of the Transformer models ===


class PositionalScheme(NamedTuple):
    """Where a scheme's positions enter a Transformer, and what it limits.

    Args:
        embedding: the `positional` of `TokenAndPositionEmbedding`
            (`"sinusoidal"`, `"learned"`) or `None` (positions enter the
            attention instead).
        self_attention: `causal -> dict` of self-attention arguments for
            the blocks of a stack (e.g. a rotary wavelength, a score
            modifier), called once per stack so a learned bias is shared.
        limits_source: whether sources longer than the model's
            `max_length` are refused.
        limits_target: whether targets longer than `max_length` are
            refused (learned positions end there).
    """

    embedding: object = None
    self_attention: object = lambda causal: {}
    limits_source: bool = False
    limits_target: bool = False


def _rotary(causal):
    return {"rotary_max_wavelength": 10000}


def _alibi(causal):
    return {"score_mod": mods.ALiBi()}


def _t5(causal):  # bidirectional in an encoder
    return {"score_mod": mods.RelativePositionBias(bidirectional=not causal)}


POSITIONAL_SCHEMES = {
    "sinusoidal": PositionalScheme("sinusoidal", limits_source=True),
    "learned": PositionalScheme(
        "learned", limits_source=True, limits_target=True
    ),
    "rotary": PositionalScheme(self_attention=_rotary),
    "alibi": PositionalScheme(self_attention=_alibi),
    "t5": PositionalScheme(self_attention=_t5),
}


def positional_scheme(positional):
    """The `PositionalScheme` named `positional` (a key of
    `POSITIONAL_SCHEMES`); a `ValueError` naming `positional` otherwise.

    The one home of the models' `positional=` argument: a new scheme is one
    entry here plus its layer or modifier.
    """
    utils.check_choice("positional", positional, tuple(POSITIONAL_SCHEMES))
    return POSITIONAL_SCHEMES[positional]
