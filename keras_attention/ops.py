"""Backend-agnostic attention math shared by every layer.

The three steps of attention (scores, softmax, weighted sum) live here once:

1. scores `e = a(q, k)` come from a layer in `keras_attention.scores`;
2. `masked_softmax` turns them into weights `α` that sum to 1 over the keys a
   query may see (masked keys get exactly 0; a query that may see no key gets
   all-zero weights, never NaN);
3. `attend` returns the weighted sum `o = Σ_j α_j v_j`.

Masks are boolean, `True` where attention is allowed, and combine with
`compute_attention_mask` into one `(B, Tq, Tk)` tensor.
"""

import keras
from keras import ops


def mask_value(dtype):
    """Large finite negative number used for masked scores in `dtype`.

    Finite so that `x - max(x)` inside a softmax never computes `inf - inf`;
    small enough in magnitude to be representable in float16.

    Args:
        dtype: a dtype name or object.

    Returns:
        A Python float.
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "float16":
        return -6.0e4  # float16 max is 65504
    return -1.0e9


def masked_softmax(scores, mask=None, axis=-1):
    """Softmax over `axis` in float32 where masked entries get weight 0.

    `α_j = exp(e_j) / Σ_{j' allowed} exp(e_j')` for allowed `j`, 0 otherwise.
    A row with no allowed entry is all zeros.

    Args:
        scores: float tensor, e.g. `(B, Tq, Tk)` or `(B, H, Tq, Tk)`.
        mask: optional bool tensor broadcastable to `scores`, `True` = keep.
        axis: the axis to normalise over. Defaults to `-1`.

    Returns:
        float32 tensor of the shape of `scores`.
    """
    scores = ops.cast(scores, "float32")  # float32 even under mixed precision
    if mask is None:
        return _softmax(scores, axis)
    mask = ops.cast(mask, "bool")
    scores = ops.where(mask, scores, mask_value("float32"))
    return ops.where(mask, _softmax(scores, axis), 0.0)


def _softmax(x, axis):
    # Written out: `ops.softmax` warns about length-1 axes (a single key).
    x = ops.exp(x - ops.stop_gradient(ops.max(x, axis=axis, keepdims=True)))
    return x / ops.sum(x, axis=axis, keepdims=True)


def causal_mask(query_length, key_length, offset=0):
    """Lower-triangular bool mask: query `i` may see keys `j <= i + offset`.

    Args:
        query_length: int or scalar tensor `Tq`.
        key_length: int or scalar tensor `Tk`.
        offset: position of the first query among the keys (used when the
            queries are the last tokens of a longer sequence). Defaults to 0.

    Returns:
        bool tensor `(Tq, Tk)`.
    """
    rows = ops.arange(query_length)[:, None] + offset  # (Tq, 1)
    cols = ops.arange(key_length)[None, :]  # (1, Tk)
    return ops.greater_equal(rows, cols)


def compute_attention_mask(
    query,
    key,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
):
    """Combine every kind of mask into one bool `(B, Tq, Tk)` mask.

    Args:
        query: tensor `(B, Tq, ...)`, used for its shape.
        key: tensor `(B, Tk, ...)`, used for its shape.
        query_mask: optional bool `(B, Tq)`: padded queries see nothing.
        key_mask: optional bool `(B, Tk)`: padded keys are never seen.
        attention_mask: optional bool `(B, Tq, Tk)`.
        use_causal_mask: whether query `i` may only see keys `j <= i`.

    Returns:
        bool tensor `(B, Tq, Tk)`, or `None` when no mask applies.
    """
    mask = None
    if query_mask is not None:
        mask = ops.cast(query_mask, "bool")[:, :, None]  # (B, Tq, 1)
    if key_mask is not None:
        key_mask = ops.cast(key_mask, "bool")[:, None, :]  # (B, 1, Tk)
        mask = key_mask if mask is None else ops.logical_and(mask, key_mask)
    if attention_mask is not None:
        attention_mask = ops.cast(attention_mask, "bool")
        mask = (
            attention_mask
            if mask is None
            else ops.logical_and(mask, attention_mask)
        )
    if use_causal_mask:
        causal = causal_mask(ops.shape(query)[1], ops.shape(key)[1])
        mask = causal[None] if mask is None else ops.logical_and(mask, causal)
    if mask is None:
        return None
    # Broadcast to a full (B, Tq, Tk) mask so callers can rely on the rank.
    batch = ops.shape(query)[0]
    return ops.broadcast_to(
        mask, (batch, ops.shape(query)[1], ops.shape(key)[1])
    )


def attend(scores, value, mask=None, dropout=None, training=None):
    """Normalise `scores` and take the weighted sum of `value`.

    `α = softmax(scores)` over the last axis (masked keys get 0), then
    `o = α · v`.

    Args:
        scores: float tensor `(..., Tq, Tk)`.
        value: float tensor `(..., Tk, dv)` with the same leading dims.
        mask: optional bool tensor broadcastable to `scores`.
        dropout: optional callable (e.g. a `keras.layers.Dropout`) applied to
            the weights before the weighted sum.
        training: passed to `dropout`.

    Returns:
        Tuple `(output, weights)`: `output` `(..., Tq, dv)` in `value`'s dtype
        and `weights` `(..., Tq, Tk)` (float32, before dropout).
    """
    weights = masked_softmax(scores, mask)  # (..., Tq, Tk)
    dropped = (
        weights if dropout is None else dropout(weights, training=training)
    )
    output = ops.matmul(ops.cast(dropped, value.dtype), value)  # (..., Tq, dv)
    return output, weights
