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
    if x.shape[axis] == 1:
        # A single key gets all the weight (and `ops.softmax` would warn).
        return ops.ones_like(x)
    # The fused softmax: one kernel forward and a short backward, instead
    # of a pass over the (..., Tq, Tk) scores per written-out step.
    return ops.softmax(x, axis=axis)


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


def combine_masks(
    query_length,
    key_length,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    sliding_window=None,
    query_offset=0,
    key_offset=0,
):
    """Combine every kind of mask into one bool mask, without broadcasting.

    Query `i` sits at position `query_offset + i` and key `j` at
    `key_offset + j`; the causal mask keeps `key position <= query position`
    and the sliding window keeps `|query position - key position| < window`.

    Args:
        query_length: int or scalar tensor `Tq`.
        key_length: int or scalar tensor `Tk`.
        query_mask: optional bool `(B, Tq)`: padded queries see nothing.
        key_mask: optional bool `(B, Tk)`: padded keys are never seen.
        attention_mask: optional bool `(B, Tq, Tk)`.
        use_causal_mask: whether queries only see keys at or before them.
        sliding_window: optional int, the width of the band of visible keys.
        query_offset: position of the first query. Defaults to `0`.
        key_offset: position of the first key. Defaults to `0`.

    Returns:
        bool tensor broadcastable to `(B, Tq, Tk)` (rank 3), or `None` when
        no mask applies.
    """
    mask = None

    def merge(mask, other):
        return other if mask is None else ops.logical_and(mask, other)

    if query_mask is not None:
        mask = ops.cast(query_mask, "bool")[:, :, None]  # (B, Tq, 1)
    if key_mask is not None:
        mask = merge(mask, ops.cast(key_mask, "bool")[:, None, :])  # (B, 1, Tk)
    if attention_mask is not None:
        mask = merge(mask, ops.cast(attention_mask, "bool"))  # (B, Tq, Tk)
    if use_causal_mask or sliding_window is not None:
        rows = ops.arange(query_length)[:, None] + query_offset  # (Tq, 1)
        cols = ops.arange(key_length)[None, :] + key_offset  # (1, Tk)
        if use_causal_mask:
            mask = merge(mask, ops.greater_equal(rows, cols)[None])
        if sliding_window is not None:
            band = ops.less(ops.abs(rows - cols), sliding_window)
            mask = merge(mask, band[None])  # (1, Tq, Tk)
    return mask


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
    query_length, key_length = ops.shape(query)[1], ops.shape(key)[1]
    mask = combine_masks(
        query_length,
        key_length,
        query_mask,
        key_mask,
        attention_mask,
        use_causal_mask,
    )
    if mask is None:
        return None
    # Broadcast to a full (B, Tq, Tk) mask so callers can rely on the rank.
    batch = ops.shape(query)[0]
    return ops.broadcast_to(mask, (batch, query_length, key_length))


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


def rotary_embedding(inputs, positions, max_wavelength=10000):
    """Rotary position embedding (RoPE) of the last axis of `inputs`.

    Each pair of features `(x_i, x_{i + D/2})` is rotated by the angle
    `p · θ_i` with `θ_i = max_wavelength^(-2i/D)`:
    `x' = x · cos(pθ) + rotate_half(x) · sin(pθ)`, where
    `rotate_half(x) = [-x_2, x_1]` (the keras_hub / GPT-NeoX convention).
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
    angles = ops.cast(positions, "float32")[..., None] * inverse_frequency
    angles = ops.concatenate([angles, angles], axis=-1)  # (..., D)
    x = ops.cast(inputs, "float32")
    first, second = ops.split(x, 2, axis=-1)
    rotated = ops.concatenate([-second, first], axis=-1)
    output = x * ops.cos(angles) + rotated * ops.sin(angles)
    return ops.cast(output, inputs.dtype)


def _expand_mask(mask, rank):
    """`(B, Tq, Tk)`-like mask -> rank `rank` by adding axes after batch."""
    for _ in range(rank - 3):
        mask = ops.expand_dims(mask, 1)
    return mask


def _unbroadcast(gradient, shape):
    """Sum `gradient` over the axes where the (static) `shape` is 1."""
    axes = [
        axis
        for axis, size in enumerate(shape)
        if size == 1 and gradient.shape[axis] != 1
    ]
    if axes:
        gradient = ops.sum(gradient, axis=axes, keepdims=True)
    return gradient


def _after(index, tensor):
    """`index`, computed after `tensor`: keeps a loop sequential.

    TensorFlow runs up to 10 iterations of a while loop at once, so several
    `(Tq, chunk)` score blocks would be alive together. A (zero) data
    dependency on one element of the previous iteration's result orders the
    iterations and keeps one block alive.
    """
    first = ops.take(ops.reshape(tensor, (-1,)), 0)
    return index + ops.cast(ops.nan_to_num(first * 0.0), "int32")


def _causal_query_blocks(query, key, chunk_size, use_causal_mask):
    """`[(start, stop)]` query blocks for causal self-attention, or `None`.

    Only for static, equal query and key lengths of more than two blocks;
    a block holds `max(4 · chunk_size, length / 8)` queries (rounded to
    whole key chunks), which keeps the visited key blocks near half.
    """
    length = query.shape[-2]
    if not use_causal_mask or not isinstance(length, int):
        return None
    if key.shape[-2] != length:
        return None
    size = max(4 * chunk_size, -(-length // 8))
    size = -(-size // chunk_size) * chunk_size
    if length <= 2 * size:
        return None
    return [(i, min(i + size, length)) for i in range(0, length, size)]


def _split_chunks(x, axis, num_chunks, chunk_size, pad_value=0):
    """Pad `axis` to `num_chunks · chunk_size`, split it, chunks first."""
    length = ops.shape(x)[axis]
    pad = [[0, 0]] * len(x.shape)
    pad[axis] = [0, num_chunks * chunk_size - length]
    x = ops.pad(x, pad, constant_values=pad_value)
    shape = list(ops.shape(x))
    shape[axis : axis + 1] = [num_chunks, chunk_size]
    return ops.moveaxis(ops.reshape(x, shape), axis, 0)  # (n, ..., c, ...)


def chunked_attention(
    query,
    key,
    value,
    chunk_size,
    score=None,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    sliding_window=None,
    query_offset=0,
):
    """Attention over key blocks with an online softmax: O(Tq · chunk) memory.

    Keys are visited `chunk_size` at a time while a running maximum `m`,
    normaliser `l` and weighted sum `a` are kept per query (Milakov &
    Gimelshein 2018; Rabe & Staats 2021; FlashAttention):

        m' = max(m, max_j s_j),  p_j = exp(s_j - m'),
        l' = l · exp(m - m') + Σ_j p_j,  a' = a · exp(m - m') + Σ_j p_j v_j,

    and the output is `a / l`, equal to `softmax(s) v` (masked keys get
    weight 0; a query that sees no key gets 0). No `(Tq, Tk)` tensor is
    built. With `score=None` (the dot product `q kᵀ`), the gradient is
    computed chunk by chunk too (recomputing the scores, as FlashAttention
    does), so training also needs O(Tq · chunk) memory; another score is
    differentiated through the loop.

    Args:
        query: `(B, ..., Tq, D)`; its leading dims are the output's.
        key: `(B, ..., Tk, D)`, leading dims broadcastable to the query's
            (e.g. `(B, H_kv, 1, Tk, D)` against `(B, H_kv, G, Tq, D)`).
        value: `(B, ..., Tk, Dv)`, leading dims as `key`.
        chunk_size: number of keys per block.
        score: callable `(query, key) -> scores (..., Tq, chunk)`, or `None`
            for the plain dot product. Defaults to `None`.
        query_mask: optional bool `(B, Tq)`.
        key_mask: optional bool `(B, Tk)`.
        attention_mask: optional bool `(B, Tq, Tk)`.
        use_causal_mask: whether queries only see earlier keys.
        sliding_window: optional band width (see `combine_masks`).
        query_offset: position of the first query (keys start at 0), e.g.
            the cache index during decoding. Defaults to `0`.

    Returns:
        `(B, ..., Tq, Dv)` in `value`'s dtype.
    """
    blocks = _causal_query_blocks(query, key, chunk_size, use_causal_mask)
    if blocks and isinstance(query_offset, int) and query_offset == 0:
        # Causal self-attention: the queries of block `[start, stop)` see
        # only keys `[0, stop)`, so the key blocks above the diagonal (about
        # half the work) are never visited.
        outputs = []
        for start, stop in blocks:
            outputs.append(
                chunked_attention(
                    query[..., start:stop, :],
                    key[..., :stop, :],
                    value[..., :stop, :],
                    chunk_size,
                    score=score,
                    query_mask=None
                    if query_mask is None
                    else query_mask[:, start:stop],
                    key_mask=None if key_mask is None else key_mask[:, :stop],
                    attention_mask=None
                    if attention_mask is None
                    else attention_mask[:, start:stop, :stop],
                    use_causal_mask=True,
                    sliding_window=sliding_window,
                    query_offset=start,
                )
            )
        return ops.concatenate(outputs, axis=-2)
    rank = len(query.shape)
    query_length = ops.shape(query)[-2]
    key_length = ops.shape(key)[-2]
    num_chunks = (key_length + chunk_size - 1) // chunk_size
    keys = _split_chunks(key, rank - 2, num_chunks, chunk_size)
    values = _split_chunks(value, rank - 2, num_chunks, chunk_size)
    key_masks = attention_masks = None
    if key_mask is not None:
        key_masks = _split_chunks(
            ops.cast(key_mask, "bool"), 1, num_chunks, chunk_size, False
        )  # (n, B, c)
    if attention_mask is not None:
        attention_mask = ops.cast(attention_mask, "bool")
        attention_masks = _split_chunks(
            attention_mask, 2, num_chunks, chunk_size, False
        )  # (n, B, Tq, c)
    negative = mask_value("float32")

    def chunk_mask(index):
        key_offset = index * chunk_size
        # Keys past the end (padding of the last chunk) are never seen.
        valid = ops.less(ops.arange(chunk_size) + key_offset, key_length)
        chunk_key_mask = valid[None, :]  # (1, c)
        if key_masks is not None:
            chunk_key_mask = ops.logical_and(
                ops.take(key_masks, index, axis=0), chunk_key_mask
            )  # (B, c)
        chunk_attention_mask = None
        if attention_masks is not None:
            chunk_attention_mask = ops.take(attention_masks, index, axis=0)
        mask = combine_masks(
            query_length,
            chunk_size,
            query_mask,
            chunk_key_mask,
            chunk_attention_mask,
            use_causal_mask,
            sliding_window,
            query_offset,
            key_offset,
        )
        return _expand_mask(mask, rank)  # broadcastable to (..., Tq, c)

    def chunk_scores(query, index):
        chunk_key = ops.take(keys, index, axis=0)  # (..., c, D)
        if score is None:
            scores = ops.matmul(query, ops.swapaxes(chunk_key, -1, -2))
        else:
            scores = score(query, chunk_key)
        return ops.cast(scores, "float32"), chunk_key  # (..., Tq, c)

    def forward(query):
        def step(index, carry):
            maximum, total, accumulated = carry
            index = _after(index, total)
            scores, _ = chunk_scores(query, index)
            mask = chunk_mask(index)
            scores = ops.where(mask, scores, negative)
            new_maximum = ops.maximum(
                maximum, ops.max(scores, axis=-1, keepdims=True)
            )  # (..., Tq, 1)
            weights = ops.where(mask, ops.exp(scores - new_maximum), 0.0)
            correction = ops.exp(maximum - new_maximum)
            total = total * correction + ops.sum(weights, -1, keepdims=True)
            chunk_value = ops.take(values, index, axis=0)  # (..., c, Dv)
            update = ops.matmul(ops.cast(weights, value.dtype), chunk_value)
            accumulated = accumulated * correction + ops.cast(
                update, "float32"
            )  # (..., Tq, Dv)
            return new_maximum, total, accumulated

        row_shape = tuple(ops.shape(query)[:-1]) + (1,)
        init = (
            ops.full(row_shape, negative, "float32"),
            ops.zeros(row_shape, "float32"),
            ops.zeros(row_shape[:-1] + (value.shape[-1],), "float32"),
        )
        maximum, total, accumulated = ops.fori_loop(0, num_chunks, step, init)
        seen = ops.greater(total, 0.0)  # False where a query sees no key
        total = ops.where(seen, total, 1.0)
        output = accumulated / total  # (..., Tq, Dv)
        return output, maximum + ops.log(total)

    if score is not None:
        return ops.cast(forward(query)[0], value.dtype)

    @ops.custom_gradient
    def dot_product_attention(query, keys, values):
        output, log_total = forward(query)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            d_output = ops.cast(upstream, "float32")  # (..., Tq, Dv)
            delta = ops.sum(d_output * output, axis=-1, keepdims=True)

            def step(index, carry):
                d_query, d_keys, d_values = carry
                index = _after(index, d_query)
                scores, chunk_key = chunk_scores(query, index)
                mask = chunk_mask(index)
                weights = ops.where(mask, ops.exp(scores - log_total), 0.0)
                chunk_value = ops.cast(ops.take(values, index, 0), "float32")
                chunk_key = ops.cast(chunk_key, "float32")
                weights_t = ops.swapaxes(weights, -1, -2)  # (..., c, Tq)
                d_value = _unbroadcast(
                    ops.matmul(weights_t, d_output), values.shape[1:]
                )  # (..., c, Dv)
                d_weights = ops.matmul(
                    d_output, ops.swapaxes(chunk_value, -1, -2)
                )  # (..., Tq, c)
                d_scores = weights * (d_weights - delta)
                d_query = d_query + ops.matmul(d_scores, chunk_key)
                d_key = _unbroadcast(
                    ops.matmul(
                        ops.swapaxes(d_scores, -1, -2),
                        ops.cast(query, "float32"),
                    ),
                    keys.shape[1:],
                )  # (..., c, D)
                start = [index] + [0] * rank
                d_keys = ops.slice_update(d_keys, start, d_key[None])
                d_values = ops.slice_update(d_values, start, d_value[None])
                return d_query, d_keys, d_values

            init = (
                ops.zeros(ops.shape(query), "float32"),
                ops.zeros(ops.shape(keys), "float32"),
                ops.zeros(ops.shape(values), "float32"),
            )
            d_query, d_keys, d_values = ops.fori_loop(0, num_chunks, step, init)
            return (
                ops.cast(d_query, query.dtype),
                ops.cast(d_keys, keys.dtype),
                ops.cast(d_values, values.dtype),
            )

        return ops.cast(output, value.dtype), grad

    return dot_product_attention(query, keys, values)
