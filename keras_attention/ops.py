r"""Backend-agnostic attention math shared by every layer.

The three steps of attention (scores, softmax, weighted sum) live here once:

1. scores $e = a(q, k)$ come from a layer in `keras_attention.scores`;
2. `masked_softmax` turns them into weights $\alpha$ that sum to 1 over the
   keys a query may see (masked keys get exactly 0; a query that may see no
   key gets all-zero weights, never NaN);
3. `attend` returns the weighted sum $o = \sum_j \alpha_j v_j$.

Masks are boolean, `True` where attention is allowed. `build_mask` is the one
place where they are made: every layer (and the chunked path, block by
block) passes its padding masks, explicit mask, causal flag, sliding window
and positions to it and gets one broadcastable mask back.
"""

import math

from keras import ops

from keras_attention import utils
from keras_attention.constants import mask_value


def _expand(mask, rank, keep_last):
    """Insert axes after the batch axis until `mask` has rank `rank`.

    `keep_last` trailing axes stay where they are, e.g. a `(B, Tq, Tk)` mask
    becomes `(B, 1, Tq, Tk)` for `rank=4`.
    """
    mask = ops.cast(mask, "bool")
    for _ in range(rank - len(mask.shape)):
        mask = ops.expand_dims(mask, -keep_last - 1)
    return mask


def build_mask(
    query_length,
    key_length,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    sliding_window=None,
    query_offset=0,
    key_offset=0,
    rank=3,
    *,
    mask_mod=None,
    heads=(),
    context=None,
):
    r"""The one attention-mask builder: every kind of mask in, one bool out.

    Query $i$ sits at position $\mathtt{query\_offset} + i$ and key $j$ at
    $\mathtt{key\_offset} + j$. The causal mask keeps
    $\text{key position} \le \text{query position}$; the sliding window keeps
    $\lvert \text{query position} - \text{key position} \rvert <
    \mathtt{sliding\_window}$; a mask modifier decides from the positions (see
    `keras_attention.mods`). The result is the logical AND of every mask
    given, without broadcasting to the full shape.

    Args:
        query_length: int or scalar tensor `Tq`.
        key_length: int or scalar tensor `Tk`.
        query_mask: optional bool `(B, Tq)`: padded queries see nothing.
        key_mask: optional bool `(B, Tk)`: padded keys are never seen.
        attention_mask: optional bool `(B, Tq, Tk)`, or of any rank up to
            `rank` with the query and key axes last (e.g. per head
            `(B, H, Tq, Tk)`).
        use_causal_mask: whether queries only see keys at or before them.
            Defaults to `False`.
        sliding_window: optional int, the width of the band of visible keys.
        query_offset: position of the first query, e.g. the cache index.
            Defaults to `0`.
        key_offset: position of the first key, e.g. the start of a key
            block. Defaults to `0`.
        rank: rank of the logits the mask applies to, e.g. `4` for
            `(B, H, Tq, Tk)`; axes are added after the batch axis. Defaults
            to `3`.
        mask_mod: optional `keras_attention.mods.MaskMod`.
        heads: sizes of the head axes of the logits, e.g. `(H,)` for
            `(B, H, Tq, Tk)`. Defaults to `()` (one head).
        context: optional dict of call information for the mask modifier
            (`segment_ids`).

    Returns:
        bool tensor of rank `rank` broadcastable to `(B, ..., Tq, Tk)`, or
        `None` when no mask applies.

    Examples:
        >>> import numpy as np
        >>> mask = build_mask(2, 3, use_causal_mask=True, query_offset=1)
        >>> np.asarray(mask)[0].astype(int)
        array([[1, 1, 0],
               [1, 1, 1]])
    """
    masks = []
    if query_mask is not None:
        query_mask = ops.expand_dims(query_mask, -1)  # (B, Tq, 1)
        masks.append(_expand(query_mask, rank, 2))
    if key_mask is not None:
        key_mask = ops.expand_dims(key_mask, -2)  # (B, 1, Tk)
        masks.append(_expand(key_mask, rank, 2))
    if attention_mask is not None:
        masks.append(_expand(attention_mask, rank, 2))
    if use_causal_mask or sliding_window is not None or mask_mod is not None:
        q_idx, kv_idx, head = positions(
            query_length, key_length, query_offset, key_offset, rank, heads
        )
        if use_causal_mask:
            masks.append(ops.greater_equal(q_idx, kv_idx))
        if sliding_window is not None:
            masks.append(ops.less(ops.abs(q_idx - kv_idx), sliding_window))
        if mask_mod is not None:
            context = dict(context or {}, num_heads=math.prod(heads))
            masks.append(mask_mod(q_idx, kv_idx, head, **context))
    return and_masks(*masks)


def positions(
    query_length, key_length, query_offset=0, key_offset=0, rank=3, heads=()
):
    """The index tensors of score and mask modifiers: `(q_idx, kv_idx, head)`.

    int32 tensors of rank `rank` that broadcast against logits
    `(B, *heads, Tq, Tk)`: `q_idx` `(1, .., Tq, 1)` holds the queries'
    positions (from `query_offset`), `kv_idx` `(1, .., 1, Tk)` the keys'
    (from `key_offset`), `head` `(1, *heads, 1, 1)` the head numbers (0 with
    no head axis).

    Examples:
        >>> import numpy as np
        >>> q, k, h = positions(2, 3, query_offset=4, rank=4, heads=(2,))
        >>> [np.asarray(x).ravel().tolist() for x in (q, k, h)]
        [[4, 5], [0, 1, 2], [0, 1]]
        >>> [tuple(x.shape) for x in (q, k, h)]
        [(1, 1, 2, 1), (1, 1, 1, 3), (1, 2, 1, 1)]
    """
    lead = (1,) * (rank - 2)
    q_idx = ops.arange(query_length, dtype="int32") + query_offset
    kv_idx = ops.arange(key_length, dtype="int32") + key_offset
    head = ops.arange(math.prod(heads), dtype="int32")
    head = ops.reshape(
        head, (1,) + tuple(heads) + (1,) * (rank - 1 - len(heads))
    )
    return (
        ops.reshape(ops.cast(q_idx, "int32"), lead + (-1, 1)),
        ops.reshape(ops.cast(kv_idx, "int32"), lead + (1, -1)),
        head,
    )


def modify_scores(
    scores,
    score_mod,
    query_offset=0,
    key_offset=0,
    heads=(),
    context=None,
    bias=None,
):
    """The logits the softmax sees: `score_mod`, then the additive `bias`.

    `score_mod(scores, q_idx, kv_idx, head)` (see `keras_attention.mods`)
    for logits `(B, *heads, Tq, Tk)` whose first query and key sit at
    `query_offset` and `key_offset`, then `+ bias` (an `attention_bias`
    broadcastable to the logits). The one "modifier, then bias" step of
    every path: dense, chunked (per key block) and fused (whose bias is
    this of zero scores).
    """
    if score_mod is not None:
        shape = ops.shape(scores)
        q_idx, kv_idx, head = positions(
            shape[-2],
            shape[-1],
            query_offset,
            key_offset,
            len(scores.shape),
            heads,
        )
        context = dict(context or {}, num_heads=math.prod(heads))
        # `call`, not `__call__`: the layer owning the modifier has built
        # it, and Keras's call checks refuse a context mixing tensors and
        # ints.
        scores = utils.call_with_context(
            score_mod.call, scores, q_idx, kv_idx, head, **context
        )
    if bias is not None:
        scores = scores + ops.cast(bias, scores.dtype)
    return scores


def seen_positions(query_mask=None, key_mask=None, attention_mask=None):
    r"""Which queries see some key, and which keys some query sees.

    A query or key outside these takes no part in any output, whatever it
    holds: `hide_unseen` sets it to 0, so that NaN or inf stored at padded
    positions never reaches a real output through
    $0 \cdot \mathrm{NaN} = \mathrm{NaN}$ (in the weighted sum, or in a
    gradient).

    Args:
        query_mask: optional bool `(B, Tq)`.
        key_mask: optional bool `(B, Tk)`.
        attention_mask: optional bool `(..., Tq, Tk)` with the batch first
            when its rank is above 2 (e.g. `(B, Tq, Tk)`, `(B, H, Tq, Tk)`).

    Returns:
        Tuple of bool `(B or 1, Tq)` and `(B or 1, Tk)`, each `None` when no
        mask says anything about it.
    """
    queries, keys = query_mask, key_mask
    if attention_mask is not None:
        mask = ops.cast(attention_mask, "bool")
        if len(mask.shape) == 2:
            mask = ops.expand_dims(mask, 0)  # (1, Tq, Tk)
        heads = tuple(range(1, len(mask.shape) - 2))
        seen_queries = ops.any(mask, axis=heads + (len(mask.shape) - 1,))
        seen_keys = ops.any(mask, axis=heads + (len(mask.shape) - 2,))
        queries = _and(queries, seen_queries)
        keys = _and(keys, seen_keys)
    return queries, keys


def _and(mask, other):
    if mask is None:
        return other
    return ops.logical_and(ops.cast(mask, "bool"), other)


def and_masks(*masks):
    """The logical AND of the masks that are not `None` (or `None`)."""
    result = None
    for mask in masks:
        if mask is not None:
            result = _and(result, ops.cast(mask, "bool"))
    return result


def hide_unseen(x, seen, axis=1):
    """Zero the positions of `x` where `seen` `(B, T)` is False.

    Args:
        x: tensor with the batch first and the `T` positions at `axis`,
            e.g. `(B, T, d)` or, with `axis=-2`, `(B, H, T, D)`.
        seen: bool `(B, T)` (or `(1, T)`), or `None` to return `x` as is.
        axis: the position axis of `x`. Defaults to `1`.

    Returns:
        `x` with 0 at the unseen positions (and a zero gradient there).
    """
    if seen is None:
        return x
    seen = ops.cast(seen, "bool")
    rank = len(x.shape)
    axis = axis % rank
    for _ in range(axis - 1):
        seen = ops.expand_dims(seen, 1)
    for _ in range(rank - axis - 1):
        seen = ops.expand_dims(seen, -1)
    return ops.where(seen, x, ops.zeros_like(x))


def without_mask(x):
    """The same values in a new tensor, so no Keras mask rides along.

    The one way the package stops Keras from propagating a mask: layers
    whose masks act on the attention weights call it before sublayers that
    would otherwise warn that they "destroy the mask". (A reshape would not
    do: JAX returns the same array for an unchanged shape, mask and all.)
    """
    return ops.copy(x)


def masked_softmax(scores, mask=None, axis=-1, sinks=None):
    r"""Softmax over `axis` in float32 where masked entries get weight 0.

    $\alpha_j = \exp(e_j) / (\exp(s) + \sum_{j' \text{ allowed}}
    \exp(e_{j'}))$ for allowed $j$, 0 otherwise, where the sink logit $s$
    (gpt-oss's attention sink) is absent ($\exp(s) = 0$) unless `sinks` is
    given. A row with no allowed entry is all zeros.

    Args:
        scores: float tensor, e.g. `(B, Tq, Tk)` or `(B, H, Tq, Tk)`.
        mask: optional bool tensor broadcastable to `scores`, `True` = keep.
        axis: the axis to normalise over. Defaults to `-1`.
        sinks: optional float logits broadcastable to `scores` with size 1
            on `axis` (e.g. `(1, H, 1, 1)`): in the denominator only, so a
            row's weights may sum below 1. Defaults to `None`.

    Returns:
        float32 tensor of the shape of `scores`.
    """
    scores = ops.cast(scores, "float32")  # float32 even under mixed precision
    if mask is not None:
        mask = ops.cast(mask, "bool")
        scores = ops.where(mask, scores, mask_value("float32"))
    if sinks is None:
        weights = _softmax(scores, axis)
    else:
        weights = _softmax_with_sink(scores, ops.cast(sinks, "float32"), axis)
    return weights if mask is None else ops.where(mask, weights, 0.0)


def _softmax(x, axis):
    if x.shape[axis] == 1:
        # A single key gets all the weight (and `ops.softmax` would warn).
        return ops.ones_like(x)
    # The fused softmax: one kernel forward and a short backward, instead
    # of a pass over the (..., Tq, Tk) scores per written-out step.
    return ops.softmax(x, axis=axis)


def _softmax_with_sink(x, sink, axis):
    r"""Softmax of `x` with one more logit, `sink`, that takes no value.

    $w = \operatorname{softmax}(x) \cdot \sigma(\operatorname{lse}(x) - s)$,
    the fused softmax scaled per row by the share the sink leaves, with
    $\operatorname{lse}(x) = \max x - \log \max \operatorname{softmax}(x)$
    (exact and never `log 0`). The gradient is written out: the fused
    softmax's own, $\partial x = w \odot (g - \sum g \odot w)$, and
    $\partial s = -(1 - \sum w) \sum g \odot w$; autodiff through the
    composed formula cost 1.3× the plain layer's training step.
    """

    @ops.custom_gradient
    def forward(x, sink):
        p = _softmax(x, axis)
        log_total = ops.max(x, axis=axis, keepdims=True) - ops.log(
            ops.max(p, axis=axis, keepdims=True)
        )
        kept = ops.sigmoid(log_total - sink)  # = sum of the weights
        weights = p * kept

        def grad(*args, upstream=None):
            # TensorFlow and JAX pass the upstream gradient alone, PyTorch
            # the inputs and `upstream=` (keras's custom_gradient).
            upstream = args[0] if upstream is None else upstream
            delta = ops.sum(upstream * weights, axis=axis, keepdims=True)
            d_x = weights * (upstream - delta)
            d_sink = unbroadcast(-(1.0 - kept) * delta, sink.shape)
            return d_x, d_sink

        return weights, grad

    return forward(x, sink)


def unbroadcast(gradient, shape):
    """Sum `gradient` over the axes where the (static) `shape` is 1: the
    gradient of an input that was broadcast up to `gradient`'s shape."""
    extra = len(gradient.shape) - len(shape)
    if extra:  # leading axes the input did not have
        gradient = ops.sum(gradient, axis=tuple(range(extra)))
    axes = [
        axis
        for axis, size in enumerate(shape)
        if size == 1 and gradient.shape[axis] != 1
    ]
    if axes:
        gradient = ops.sum(gradient, axis=axes, keepdims=True)
    return gradient


def attend(scores, value, mask=None, dropout=None, training=None, sinks=None):
    r"""Normalise `scores` and take the weighted sum of `value`.

    $\alpha = \operatorname{softmax}(\mathtt{scores})$ over the last axis
    (masked keys get 0), then $o = \alpha \cdot v$.

    Args:
        scores: float tensor `(..., Tq, Tk)`.
        value: float tensor `(..., Tk, dv)` with the same leading dims.
        mask: optional bool tensor broadcastable to `scores`.
        dropout: optional callable (e.g. a `keras.layers.Dropout`) applied to
            the weights before the weighted sum.
        training: passed to `dropout`.
        sinks: optional sink logits of `masked_softmax`.

    Returns:
        Tuple `(output, weights)`: `output` `(..., Tq, dv)` in `value`'s dtype
        and `weights` `(..., Tq, Tk)` (float32, before dropout).
    """
    weights = masked_softmax(scores, mask, sinks=sinks)  # (..., Tq, Tk)
    dropped = (
        weights if dropout is None else dropout(weights, training=training)
    )
    output = ops.matmul(ops.cast(dropped, value.dtype), value)  # (..., Tq, dv)
    return output, weights


def rms_normalize(x, scale, epsilon=1e-6):
    r"""$x / \sqrt{\operatorname{mean}(x^2) + \epsilon} \cdot
    \mathtt{scale}$ over the last axis, computed in float32.

    Args:
        x: float tensor `(..., D)`.
        scale: float `(D,)`, the learned gain.
        epsilon: added to the mean square. Defaults to `1e-6`.

    Returns:
        Tensor of the shape and dtype of `x`.

    Reference:
        Zhang & Sennrich, 2019, "Root Mean Square Layer Normalization".
    """
    x32 = ops.cast(x, "float32")
    mean_square = ops.mean(ops.square(x32), axis=-1, keepdims=True)
    normalized = x32 * ops.rsqrt(mean_square + epsilon)
    return ops.cast(normalized * ops.cast(scale, "float32"), x.dtype)


def rotary_embedding(inputs, positions, max_wavelength=10000):
    r"""Rotary position embedding (RoPE) of the last axis of `inputs`.

    Each pair of features $(x_i, x_{i + D/2})$ is rotated by the angle
    $p \cdot \theta_i$ with $\theta_i = \mathtt{max\_wavelength}^{-2i/D}$:
    $x' = x \cdot \cos(p\theta) + \operatorname{rotate\_half}(x) \cdot
    \sin(p\theta)$, where $\operatorname{rotate\_half}(x) = [-x_2, x_1]$ (the
    keras_hub / GPT-NeoX convention).
    The dot product of two rotated vectors then depends only on the
    difference of their positions.

    Args:
        inputs: float tensor `(..., D)` with `D` even.
        positions: positions broadcastable to `inputs.shape[:-1]`, e.g.
            `(T, 1)` for `(B, T, H, D)` inputs or `(T,)` for `(B, H, T, D)`.
        max_wavelength: the longest wavelength. Defaults to `10000`.

    Returns:
        Tensor of the shape and dtype of `inputs`.
    """
    dim = inputs.shape[-1]
    if dim is None or dim % 2:
        raise ValueError(
            "Rotary embedding needs an even last dimension. "
            f"Received: inputs.shape={tuple(inputs.shape)}"
        )
    exponents = ops.arange(0, dim, 2, dtype="float32") / dim  # (D/2,)
    inverse_frequency = 1.0 / ops.power(float(max_wavelength), exponents)
    positions = ops.expand_dims(ops.cast(positions, "float32"), -1)
    angles = positions * inverse_frequency  # (..., D/2)
    angles = ops.concatenate([angles, angles], axis=-1)  # (..., D)
    x = ops.cast(inputs, "float32")
    first, second = ops.split(x, 2, axis=-1)
    rotated = ops.concatenate([-second, first], axis=-1)
    output = x * ops.cos(angles) + rotated * ops.sin(angles)
    return ops.cast(output, inputs.dtype)
