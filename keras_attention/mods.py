r"""Score and mask modifiers: FlexAttention's idea for Keras.

A **score modifier** changes the logits after the score and before the
softmax, `scores' = mod(scores, q_idx, kv_idx, head)`; a **mask modifier**
says which keys a query may see, `mask = mod(q_idx, kv_idx, head)`. Both
are functions of the positions, so the attention layers apply them wherever
the logits are: on the full `(Tq, Tk)` logits (dense path), block by block
without ever building them (chunked path, `keras_attention.chunked`), and on
one new token against a key/value cache (decoding).

The index arguments are int32 tensors of the logits' rank that broadcast
against them, with a batch axis of size 1: `q_idx` varies over queries
(`(1, .., Tq, 1)`), `kv_idx` over keys (`(1, .., 1, Tk)`) and `head` over
heads (`(1, H, 1, 1)` for `(B, H, Tq, Tk)` logits; the grouped layout of
`MultiHeadAttention` uses `(1, H_kv, G, 1, 1)`). Positions are absolute: a
cache index or a key block's start offsets them. Extra information that
comes with the call arrives as keyword arguments: `num_heads` (the layer's
`H`) always, `segment_ids` (packed sequences) when the call has them; each
reaches only the modifiers whose `call` (or `bias`) names it or takes
`**context`, so `call(self, q_idx, kv_idx, head)` is a complete signature.

Built-ins are registered Keras objects, so layers holding them save and
load; write your own by subclassing `ScoreMod` (a layer, so it may own
weights) or `MaskMod` and registering it with
`keras.saving.register_keras_serializable` (a lambda does not serialize).

| modifier | effect |
|---|---|
| `ALiBi()` | adds $-m_h \cdot \lvert q - k \rvert$, $m_h = 2^{-8(h+1)/H}$ |
| `RelativePositionBias()` | T5's learned bias of the bucketed $k - q$ |
| `SoftCap(cap)` | $\mathtt{cap}\tanh(\mathtt{scores}/\mathtt{cap})$ (Gemma 2) |
| `Causal()` | $k \le q$ |
| `SlidingWindow(window)` | $\lvert q - k \rvert < \mathtt{window}$ |
| `PrefixLM(prefix_length)` | $k < \mathtt{prefix\_length}$ or $k \le q$ |
| `DocumentMask()` | `segment_ids[q] == segment_ids[k]` |

Mask modifiers combine with `&` and `|`.
"""

import math

import keras
from keras import ops

from keras_attention import utils

register = keras.saving.register_keras_serializable(package="keras_attention")


# === Score modifiers ===


class ScoreMod(keras.layers.Layer):
    """Base class: `call(scores, q_idx, kv_idx, head, **context) -> scores`.

    Subclasses that only add a bias implement `bias(q_idx, kv_idx, head)`
    (and keep the default `call`): the fused kernels then take the bias
    directly, and the chunked gradient needs no more. A modifier with
    weights that the chunked backward pass should train implements
    `bias_gradients(d_bias, q_idx, kv_idx, head)`; a non-additive one,
    `logits_gradient(scores, d_scores, q_idx, kv_idx, head)`. Without
    them, the chunked path differentiates through its loop instead.
    """

    additive = True

    def bias(self, q_idx, kv_idx, head, **context):
        """The additive bias, broadcastable to the logits."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `bias` or `call`."
        )

    def call(self, scores, q_idx, kv_idx, head, **context):
        bias = utils.call_with_context(
            self.bias, q_idx, kv_idx, head, **context
        )
        return scores + ops.cast(bias, scores.dtype)

    def logits_gradient(self, scores, d_scores, q_idx, kv_idx, head, **context):
        r"""$\partial L / \partial \mathtt{scores}$ from
        $\partial L / \partial \mathtt{scores}'$: the identity for a bias."""
        if self.additive:
            return d_scores
        raise NotImplementedError

    def bias_gradients(self, d_bias, q_idx, kv_idx, head, **context):
        r"""Gradients of `trainable_weights` from
        $\partial L / \partial \mathtt{bias}$ (summed over the batch, shaped
        like the bias); none for a bias without weights."""
        if self.trainable_weights:
            raise NotImplementedError
        return []

    @property
    def blockwise_gradient(self):
        """Whether the chunked backward pass can differentiate it itself."""
        own = type(self)
        if self.trainable_weights and (
            own.bias_gradients is ScoreMod.bias_gradients
        ):
            return False
        return (
            self.additive or own.logits_gradient is not ScoreMod.logits_gradient
        )

    def compute_output_shape(self, scores_shape, *args):
        return scores_shape


def alibi_slopes(num_heads):
    """Per-head ALiBi slopes (Press et al.), as keras-hub's `AlibiBias`.

    For $H$ a power of two, $m_h = 2^{-8(h+1)/H}$; otherwise the slopes of
    the nearest lower power of two, then every other slope of twice that.
    """

    def power_of_two(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    extra = alibi_slopes(2 * closest)[0::2][: num_heads - closest]
    return power_of_two(closest) + extra


@register
class ALiBi(ScoreMod):
    r"""Attention with linear biases:
    $\mathtt{scores} - m_h \cdot
    \lvert \mathtt{q\_idx} - \mathtt{kv\_idx} \rvert$.

    Each head $h$ penalises distance with its own slope $m_h$ (see
    `alibi_slopes`), so no position embedding is needed and lengths beyond
    training extrapolate. Under a causal mask the weights equal keras-hub's
    `AlibiBias` (which adds $m_h \cdot (\mathtt{kv\_idx} - \mathtt{q\_idx})$,
    the same up to a constant per query row).

    Args:
        num_heads: number of heads `H`; `None` takes the attention layer's.
            Defaults to `None`.

    Example:
        >>> import numpy as np
        >>> from keras_attention.layers import MultiHeadAttention
        >>> layer = MultiHeadAttention(2, 4, score_mod=ALiBi())
        >>> tuple(layer(np.ones((1, 3, 8)), np.ones((1, 3, 8))).shape)
        (1, 3, 8)

    Reference:
        Press et al., 2022, "Train Short, Test Long: Attention with Linear
        Biases Enables Input Length Extrapolation".
    """

    def __init__(self, num_heads=None, **kwargs):
        super().__init__(**kwargs)
        utils.check_positive_int("num_heads", num_heads, allow_none=True)
        self.num_heads = num_heads

    def bias(self, q_idx, kv_idx, head, **context):
        heads = self.num_heads or context["num_heads"]
        slopes = ops.convert_to_tensor(alibi_slopes(heads), "float32")
        slope = ops.take(slopes, head)  # broadcasts like `head`
        distance = ops.abs(ops.cast(q_idx - kv_idx, "float32"))
        return -slope * distance

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


def relative_position_bucket(
    relative_position, bidirectional=True, num_buckets=32, max_distance=128
):
    r"""T5's bucket of
    $\mathtt{relative\_position} = \mathtt{kv\_idx} - \mathtt{q\_idx}$ (int
    tensor).

    Half the buckets (or all, causal) hold exact small distances; the rest
    grow logarithmically up to `max_distance`, beyond which all distances
    share the last bucket. With `bidirectional`, keys after the query get
    buckets of their own.

    Reference:
        Raffel et al., 2020, "Exploring the Limits of Transfer Learning with
        a Unified Text-to-Text Transformer" (T5), as in Mesh TensorFlow.
    """
    relative_position = ops.cast(relative_position, "int32")
    buckets = ops.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += ops.cast(relative_position > 0, "int32") * num_buckets
        distance = ops.abs(relative_position)
    else:
        distance = -ops.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    # log-spaced buckets for max_exact <= distance < max_distance
    scaled = ops.log(
        ops.maximum(ops.cast(distance, "float32"), 1.0) / max_exact
    ) / math.log(max_distance / max_exact)
    large = max_exact + ops.cast(scaled * (num_buckets - max_exact), "int32")
    large = ops.minimum(large, num_buckets - 1)
    return buckets + ops.where(distance < max_exact, distance, large)


@register
class RelativePositionBias(ScoreMod):
    r"""T5's learned relative position bias:
    $\mathtt{scores} + E[\operatorname{bucket}(k - q), h]$.

    One weight, `embeddings` `(num_buckets, H)`, built on the attention
    layer's number of heads. Share one instance between the layers of a
    stack, as T5 does (the prebuilt `Transformer(positional="t5")` shares
    one per stack). Its gradient is computed in the chunked backward pass
    too, block by block.

    Args:
        num_buckets: number of distance buckets. Defaults to `32`.
        max_distance: distances from here on share the last bucket.
            Defaults to `128`.
        bidirectional: whether keys after the query have buckets of their
            own (encoder); `False` for causal self-attention. Defaults to
            `True`.

    Example:
        >>> import numpy as np
        >>> from keras_attention.layers import MultiHeadAttention
        >>> bias = RelativePositionBias(num_buckets=8, max_distance=16)
        >>> layer = MultiHeadAttention(2, 4, score_mod=bias)
        >>> tuple(layer(np.ones((1, 3, 8)), np.ones((1, 3, 8))).shape)
        (1, 3, 8)
        >>> tuple(bias.embeddings.shape)
        (8, 2)

    Reference:
        Raffel et al., 2020, "Exploring the Limits of Transfer Learning with
        a Unified Text-to-Text Transformer"; Shaw et al., 2018.
    """

    def __init__(
        self, num_buckets=32, max_distance=128, bidirectional=True, **kwargs
    ):
        super().__init__(**kwargs)
        utils.check_number("num_buckets", num_buckets, 1, integer=True)
        utils.check_number(
            "max_distance", max_distance, num_buckets // 2, integer=True
        )
        utils.check_choice("bidirectional", bidirectional, (True, False))
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional

    def build(self, heads_shape):
        """`heads_shape`: `(H,)`, the number of heads it biases."""
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_buckets, int(heads_shape[-1])),
            initializer="zeros",
        )

    def _flat_index(self, q_idx, kv_idx, head):
        q_idx, kv_idx, head = (
            ops.cast(x, "int32") for x in (q_idx, kv_idx, head)
        )
        buckets = relative_position_bucket(
            kv_idx - q_idx,
            self.bidirectional,
            self.num_buckets,
            self.max_distance,
        )
        return buckets * self.embeddings.shape[1] + head  # into E flat

    def bias(self, q_idx, kv_idx, head, **context):
        table = ops.reshape(ops.convert_to_tensor(self.embeddings), (-1,))
        return ops.take(table, self._flat_index(q_idx, kv_idx, head))

    def bias_gradients(self, d_bias, q_idx, kv_idx, head, **context):
        index = self._flat_index(q_idx, kv_idx, head)
        index = index + ops.zeros_like(d_bias, dtype="int32")  # broadcast
        d_bias = d_bias + ops.zeros_like(index, dtype=d_bias.dtype)
        d_flat = ops.segment_sum(
            ops.reshape(d_bias, (-1,)),
            ops.reshape(index, (-1,)),
            num_segments=math.prod(self.embeddings.shape),
        )
        return [ops.reshape(d_flat, self.embeddings.shape)]

    def get_config(self):
        return {
            **super().get_config(),
            "num_buckets": self.num_buckets,
            "max_distance": self.max_distance,
            "bidirectional": self.bidirectional,
        }


@register
class SoftCap(ScoreMod):
    r"""Logit soft-capping:
    $\mathtt{cap} \cdot \tanh(\mathtt{scores} / \mathtt{cap})$, smooth and
    bounded.

    Keeps every logit in $(-\mathtt{cap}, \mathtt{cap})$ (Gemma 2 uses 50), so
    no single key can take all the weight through an exploding logit.

    Args:
        cap: the bound. Defaults to `50.0`.

    Example:
        >>> import numpy as np
        >>> from keras_attention.layers import MultiHeadAttention
        >>> layer = MultiHeadAttention(2, 4, score_mod=SoftCap(30.0))
        >>> tuple(layer(np.ones((1, 3, 8)), np.ones((1, 3, 8))).shape)
        (1, 3, 8)

    Reference:
        Gemma Team, 2024, "Gemma 2: Improving Open Language Models at a
        Practical Size".
    """

    additive = False

    def __init__(self, cap=50.0, **kwargs):
        super().__init__(**kwargs)
        utils.check_positive_number("cap", cap)
        self.cap = cap

    def call(self, scores, q_idx, kv_idx, head, **context):
        cap = ops.cast(self.cap, scores.dtype)
        return cap * ops.tanh(scores / cap)

    def logits_gradient(self, scores, d_scores, q_idx, kv_idx, head, **context):
        squashed = ops.tanh(scores / ops.cast(self.cap, scores.dtype))
        return d_scores * (1.0 - ops.square(squashed))

    def get_config(self):
        return {**super().get_config(), "cap": self.cap}


# === Mask modifiers ===


class MaskMod:
    r"""Base class: `call(q_idx, kv_idx, head, **context) -> bool` mask.

    `True` where the query may attend to the key. Subclasses may also say,
    with `key_range(query_start, query_stop)`, which keys the queries
    $[\mathtt{query\_start}, \mathtt{query\_stop})$ may see at most (Python
    ints, `(low, high)`), so the chunked path skips the key blocks outside
    without computing them. Combine with `&` and `|`.
    """

    def __call__(self, q_idx, kv_idx, head, **context):
        mask = utils.call_with_context(
            self.call, q_idx, kv_idx, head, **context
        )
        return ops.cast(mask, "bool")

    def call(self, q_idx, kv_idx, head, **context):
        raise NotImplementedError

    def key_range(self, query_start, query_stop):
        """`(low, high)`: no query of the range sees a key outside, or
        `None` when that depends on the data."""
        return None

    def __and__(self, other):
        return And([self, other])

    def __or__(self, other):
        return Or([self, other])

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@register
class Causal(MaskMod):
    r"""$\mathtt{kv\_idx} \le \mathtt{q\_idx}$: a query sees itself and the
    keys before it.

    Example:
        >>> import numpy as np
        >>> np.asarray(Causal()(np.arange(3)[:, None], np.arange(3), 0))
        array([[ True, False, False],
               [ True,  True, False],
               [ True,  True,  True]])
    """

    def call(self, q_idx, kv_idx, head, **context):
        return kv_idx <= q_idx

    def key_range(self, query_start, query_stop):
        return 0, query_stop


@register
class SlidingWindow(MaskMod):
    r"""$\lvert \mathtt{q\_idx} - \mathtt{kv\_idx} \rvert < \mathtt{window}$: a
    band of keys around each query.

    As the `sliding_window=` argument of `MultiHeadAttention`; with
    `Causal()` (`Causal() & SlidingWindow(w)`) only the `w` latest keys.

    Args:
        window: the band's width, a positive int.

    Reference:
        Beltagy et al., 2020, "Longformer"; Jiang et al., 2023, "Mistral 7B".
    """

    def __init__(self, window):
        utils.check_positive_int("window", window)
        self.window = window

    def call(self, q_idx, kv_idx, head, **context):
        return ops.abs(q_idx - kv_idx) < self.window

    def key_range(self, query_start, query_stop):
        return max(0, query_start - self.window + 1), (
            query_stop + self.window - 1
        )

    def get_config(self):
        return {"window": self.window}


@register
class PrefixLM(MaskMod):
    r"""$\mathtt{kv\_idx} < \mathtt{prefix\_length}$ or
    $\mathtt{kv\_idx} \le \mathtt{q\_idx}$: a bidirectional prefix.

    Every query sees the whole prefix (the "input"); after it, attention is
    causal (the "target"), as in a prefix language model.

    Args:
        prefix_length: length of the prefix, an int ≥ 0.

    Reference:
        Raffel et al., 2020 (T5), section 3.2.1.
    """

    def __init__(self, prefix_length):
        utils.check_number(
            "prefix_length", prefix_length, 0, integer=True, include_low=True
        )
        self.prefix_length = prefix_length

    def call(self, q_idx, kv_idx, head, **context):
        return ops.logical_or(kv_idx < self.prefix_length, kv_idx <= q_idx)

    def key_range(self, query_start, query_stop):
        return 0, max(self.prefix_length, query_stop)

    def get_config(self):
        return {"prefix_length": self.prefix_length}


@register
class DocumentMask(MaskMod):
    """`segment_ids[q_idx] == segment_ids[kv_idx]`: packed sequences.

    Several documents packed into one row of a batch attend only within
    themselves, so a batch carries no padding. The segment ids (int
    `(B, T)`, one id per document) come with the call as `segment_ids=`;
    combine with `Causal()` for a decoder.

    Example:
        >>> import numpy as np
        >>> from keras_attention.layers import MultiHeadAttention
        >>> layer = MultiHeadAttention(2, 4, mask_mod=DocumentMask())
        >>> x = np.ones((1, 4, 8), "float32")
        >>> tuple(layer(x, x, segment_ids=np.array([[0, 0, 1, 1]])).shape)
        (1, 4, 8)
    """

    def call(self, q_idx, kv_idx, head, segment_ids=None, **context):
        if segment_ids is None:
            raise ValueError(
                "`DocumentMask` needs the call's `segment_ids` (int (B, T)). "
                "Received: segment_ids=None"
            )
        segment_ids = ops.convert_to_tensor(segment_ids, "int32")
        length = ops.shape(segment_ids)[1]

        def segments(index):  # (1, .., T_i, ..) positions -> (B, .., ..)
            flat = ops.clip(ops.reshape(index, (-1,)), 0, length - 1)
            ids = ops.take(segment_ids, flat, axis=1)  # (B, T_i)
            return ops.reshape(ids, (-1,) + tuple(index.shape[1:]))

        return ops.equal(segments(q_idx), segments(kv_idx))


class _Combined(MaskMod):
    def __init__(self, mods):
        self.mods = [
            keras.saving.deserialize_keras_object(m) if isinstance(m, dict)
            else m
            for m in mods
        ]  # fmt: skip
        for mod in self.mods:
            if not isinstance(mod, MaskMod):
                raise TypeError(
                    f"`{type(self).__name__}` combines mask modifiers. "
                    f"Received: {mod!r}"
                )

    def get_config(self):
        return {"mods": [utils.serialize(m) for m in self.mods]}

    def call(self, q_idx, kv_idx, head, **context):
        masks = [m(q_idx, kv_idx, head, **context) for m in self.mods]
        result = masks[0]
        for mask in masks[1:]:
            result = self.combine(result, mask)
        return result


@register
class And(_Combined):
    """Keys every one of `mods` allows (`a & b`)."""

    combine = staticmethod(ops.logical_and)

    def key_range(self, query_start, query_stop):
        ranges = [m.key_range(query_start, query_stop) for m in self.mods]
        ranges = [r for r in ranges if r is not None]
        if not ranges:
            return None
        return max(r[0] for r in ranges), min(r[1] for r in ranges)


@register
class Or(_Combined):
    """Keys any of `mods` allows (`a | b`)."""

    combine = staticmethod(ops.logical_or)

    def key_range(self, query_start, query_stop):
        ranges = [m.key_range(query_start, query_stop) for m in self.mods]
        if any(r is None for r in ranges):
            return None
        return min(r[0] for r in ranges), max(r[1] for r in ranges)


def get(identifier, kind):
    """A modifier from an instance, a config dict or `None`.

    Args:
        identifier: a `ScoreMod` / `MaskMod`, its config dict, or `None`.
        kind: `ScoreMod` or `MaskMod`, the class expected.
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    if not isinstance(identifier, kind):
        name = "score_mod" if kind is ScoreMod else "mask_mod"
        raise TypeError(
            f"`{name}` must be a `keras_attention.mods.{kind.__name__}` "
            f"(write a registered subclass; a lambda does not serialize). "
            f"Received: {identifier!r}"
        )
    return identifier


def serialize(mod):
    """Config of a modifier (or `None`) for a parent layer's config."""
    return utils.serialize(mod)
