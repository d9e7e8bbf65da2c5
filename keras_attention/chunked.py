"""Memory-efficient attention: keys in blocks, online softmax, own gradient.

`chunked_attention` equals `softmax(s) v` with the masks of
`keras_attention.ops.build_mask`, but never builds the `(Tq, Tk)` scores.
Keys are visited `chunk_size` at a time while a running maximum `m`,
normaliser `l` and weighted sum `a` are kept per query (Milakov & Gimelshein
2018; Rabe & Staats 2021; FlashAttention):

    m' = max(m, max_j s_j),  p_j = exp(s_j - m'),
    l' = l · exp(m - m') + Σ_j p_j,  a' = a · exp(m - m') + Σ_j p_j v_j,

and the output is `a / l`. The module has three parts:

- `_forward`: the loop above over key blocks;
- `_backward`: the gradient of the dot-product score, block by block,
  recomputing the weights from the saved `log l` (as FlashAttention does),
  so training also needs O(Tq · chunk) memory;
- `_causal_query_blocks`: causal self-attention split into query blocks
  that never visit the key blocks above the diagonal.
"""

from keras import ops

from keras_attention import ops as attention_ops
from keras_attention import scores
from keras_attention import utils
from keras_attention.constants import mask_value


def _in_order(index, carry):
    """`index`, computed after `carry`: the loop's iterations run in order.

    TensorFlow runs up to 10 iterations of a while loop at once, so several
    `(Tq, chunk)` score blocks would be alive together. A (zero) data
    dependency on one element of the previous iteration's result orders the
    iterations and keeps one block alive; other backends run loops in order
    anyway, and the dependency costs one scalar.
    """
    first = ops.sum(ops.reshape(carry, (-1,))[:1])  # 0 for an empty batch
    return index + ops.cast(ops.nan_to_num(first * 0.0), "int32")


def _split_chunks(x, axis, num_chunks, chunk_size, pad_value=0):
    """Pad `axis` to `num_chunks · chunk_size`, split it, chunks first."""
    axis = axis % len(x.shape)
    pad = [[0, 0]] * len(x.shape)
    pad[axis] = [0, num_chunks * chunk_size - ops.shape(x)[axis]]
    x = ops.pad(x, pad, constant_values=pad_value)
    shape = list(ops.shape(x))
    shape[axis : axis + 1] = [num_chunks, chunk_size]
    return ops.moveaxis(ops.reshape(x, shape), axis, 0)  # (n, ..., c, ...)


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


def _dot_scores(query, chunk_key):
    """float32 `q kᵀ` of one key block: `(..., Tq, c)`."""
    return ops.cast(scores.dot_logits(query, chunk_key), "float32")


def _forward(query, keys, values, block_scores, block_mask, num_chunks):
    """The online softmax over key blocks: `(output, log l + m)`, float32.

    `block_scores(index)` and `block_mask(index)` give the float32 scores
    and the bool mask of key block `index`, both `(..., Tq, c)`-shaped.
    """
    negative = mask_value("float32")

    def step(index, carry):
        maximum, total, accumulated = carry
        index = _in_order(index, total)
        mask = block_mask(index)
        logits = ops.where(mask, block_scores(index), negative)
        block_maximum = ops.max(
            logits, axis=-1, keepdims=True, initial=negative
        )  # (..., Tq, 1); `initial`: an empty batch is no error
        new_maximum = ops.maximum(maximum, block_maximum)
        weights = ops.where(mask, ops.exp(logits - new_maximum), 0.0)
        correction = ops.exp(maximum - new_maximum)
        total = total * correction + ops.sum(weights, -1, keepdims=True)
        chunk_value = ops.take(values, index, axis=0)  # (..., c, Dv)
        update = ops.matmul(ops.cast(weights, values.dtype), chunk_value)
        accumulated = accumulated * correction + ops.cast(update, "float32")
        return new_maximum, total, accumulated  # accumulated (..., Tq, Dv)

    row_shape = tuple(ops.shape(query)[:-1]) + (1,)
    init = (
        ops.full(row_shape, negative, "float32"),
        ops.zeros(row_shape, "float32"),
        ops.zeros(row_shape[:-1] + (values.shape[-1],), "float32"),
    )
    maximum, total, accumulated = utils.fori_loop(num_chunks, step, init)
    total = ops.where(ops.greater(total, 0.0), total, 1.0)  # 0: sees no key
    return accumulated / total, maximum + ops.log(total)


def _backward(query, keys, values, block_mask, output, log_total, upstream):
    """Gradients `(d_query, d_keys, d_values)` of the dot-product attention.

    With `p = exp(s - log_total)` recomputed per block and
    `δ = Σ_d dO · O` per query: `dV = pᵀ dO`, `dS = p ⊙ (dO Vᵀ − δ)`,
    `dQ = Σ_blocks dS K`, `dK = dSᵀ Q` (summed over broadcast axes).
    """
    d_output = ops.cast(upstream, "float32")  # (..., Tq, Dv)
    delta = ops.sum(d_output * output, axis=-1, keepdims=True)
    query_32 = ops.cast(query, "float32")

    def step(index, carry):
        d_query, d_keys, d_values = carry
        index = _in_order(index, d_query)
        chunk_key = ops.take(keys, index, axis=0)  # (..., c, D)
        mask = block_mask(index)
        logits = _dot_scores(query, chunk_key)
        weights = ops.where(mask, ops.exp(logits - log_total), 0.0)
        chunk_value = ops.cast(ops.take(values, index, 0), "float32")
        d_value = ops.matmul(ops.swapaxes(weights, -1, -2), d_output)
        d_weights = ops.matmul(d_output, ops.swapaxes(chunk_value, -1, -2))
        d_scores = weights * (d_weights - delta)  # (..., Tq, c)
        d_query = d_query + ops.matmul(d_scores, ops.cast(chunk_key, "float32"))
        d_key = ops.matmul(ops.swapaxes(d_scores, -1, -2), query_32)
        start = [index] + [0] * (len(keys.shape) - 1)
        d_key = _unbroadcast(d_key, keys.shape[1:])[None]
        d_value = _unbroadcast(d_value, values.shape[1:])[None]
        d_keys = ops.slice_update(d_keys, start, d_key)
        d_values = ops.slice_update(d_values, start, d_value)
        return d_query, d_keys, d_values

    init = tuple(
        ops.zeros(ops.shape(x), "float32") for x in (query, keys, values)
    )
    num_chunks = ops.shape(keys)[0]
    d_query, d_keys, d_values = utils.fori_loop(num_chunks, step, init)
    return (
        ops.cast(d_query, query.dtype),
        ops.cast(d_keys, keys.dtype),
        ops.cast(d_values, values.dtype),
    )


def _dot_product_attention(query, keys, values, masks, make_block_mask):
    """Dot-product attention over key blocks with its blockwise gradient.

    Everything the gradient uses is an argument of the custom-gradient
    function (the mask tensors too, with no gradient), so it also runs
    under JAX's tracing.
    """

    @ops.custom_gradient
    def attention(query, keys, values, *masks):
        block_mask = make_block_mask(*masks)
        output, log_total = _forward(
            query,
            keys,
            values,
            lambda index: _dot_scores(query, ops.take(keys, index, axis=0)),
            block_mask,
            ops.shape(keys)[0],
        )

        def grad(*args, upstream=None):
            # Keras's backend-agnostic signature: TensorFlow and JAX pass
            # the upstream gradient alone, PyTorch the inputs and
            # `upstream=`.
            upstream = args[0] if upstream is None else upstream
            gradients = _backward(
                query, keys, values, block_mask, output, log_total, upstream
            )
            return gradients + (None,) * len(masks)

        return ops.cast(output, values.dtype), grad

    return attention(query, keys, values, *masks)


def _causal_query_blocks(query, key, chunk_size, use_causal_mask, offset):
    """`[(start, stop)]` query blocks for causal self-attention, or `None`.

    Only for static, equal query and key lengths of more than two blocks
    and a static zero offset; a block holds `max(4 · chunk_size, T / 8)`
    queries (rounded to whole key chunks), which keeps the visited key
    blocks near half.
    """
    length = query.shape[-2]
    static = isinstance(length, int) and isinstance(offset, int)
    if not (use_causal_mask and static and offset == 0):
        return None
    if key.shape[-2] != length:
        return None
    size = max(4 * chunk_size, -(-length // 8))
    size = -(-size // chunk_size) * chunk_size
    if length <= 2 * size:
        return None
    return [(i, min(i + size, length)) for i in range(0, length, size)]


def _slice_masks(masks, start, stop):
    """The masks of queries `[start, stop)` and keys `[0, stop)`."""
    query_mask, key_mask, attention_mask = masks
    return (
        None if query_mask is None else query_mask[:, start:stop],
        None if key_mask is None else key_mask[:, :stop],
        None
        if attention_mask is None
        else attention_mask[..., start:stop, :stop],
    )


def _attend_key_blocks(
    query, key, value, chunk_size, score, masks, use_causal_mask, window, offset
):
    """Attention of all queries over the key blocks (no query split)."""
    rank = len(query.shape)
    query_length, key_length = ops.shape(query)[-2], ops.shape(key)[-2]
    num_chunks = (key_length + chunk_size - 1) // chunk_size
    query_mask, key_mask, attention_mask = masks
    # NaN or inf at padded positions must not leak through 0 · NaN.
    query = attention_ops.hide_unseen(query, query_mask, axis=-2)
    key = attention_ops.hide_unseen(key, key_mask, axis=-2)
    value = attention_ops.hide_unseen(value, key_mask, axis=-2)
    keys = _split_chunks(key, -2, num_chunks, chunk_size)  # (n, ..., c, D)
    values = _split_chunks(value, -2, num_chunks, chunk_size)
    if key_mask is None:
        key_mask = ops.ones((1, key_length), "bool")
    # Padding keys of the last block are never seen: pad the mask with False.
    tensors = {
        "query_mask": query_mask,
        "key_masks": _split_chunks(
            ops.cast(key_mask, "bool"), -1, num_chunks, chunk_size, False
        ),  # (n, B, c)
        "attention_masks": None
        if attention_mask is None
        else _split_chunks(
            ops.cast(attention_mask, "bool"), -1, num_chunks, chunk_size, False
        ),  # (n, B, ..., Tq, c)
        "offset": None if isinstance(offset, int) else offset,
    }
    names = [name for name, x in tensors.items() if x is not None]

    def make_block_mask(*given):
        given = dict(zip(names, given))

        def block_mask(index):
            attention_masks = given.get("attention_masks")
            return attention_ops.build_mask(
                query_length,
                chunk_size,
                given.get("query_mask"),
                ops.take(given["key_masks"], index, axis=0),
                None
                if attention_masks is None
                else ops.take(attention_masks, index, axis=0),
                use_causal_mask,
                window,
                given.get("offset", offset),
                index * chunk_size,
                rank,
            )  # (B, ..., Tq, c)-broadcastable

        return block_mask

    given = [tensors[name] for name in names]
    if score is None:
        return _dot_product_attention(
            query, keys, values, given, make_block_mask
        )
    # Another score (weights of its own) is differentiated through the loop.
    output, _ = _forward(
        query,
        keys,
        values,
        lambda index: ops.cast(
            score(query, ops.take(keys, index, axis=0)), "float32"
        ),
        make_block_mask(*given),
        num_chunks,
    )
    return ops.cast(output, value.dtype)


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

    Equals `softmax(s) v` with the mask of `keras_attention.ops.build_mask`
    (masked keys get weight 0; a query that sees no key gets 0) without
    building a `(Tq, Tk)` tensor. With `score=None` (the dot product
    `q kᵀ`) the gradient is computed block by block too; another score is
    differentiated through the loop. Causal self-attention of static length
    skips the key blocks above the diagonal.

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
        attention_mask: optional bool `(B, Tq, Tk)`, or with head axes
            `(B, ..., Tq, Tk)` up to the query's rank.
        use_causal_mask: whether queries only see earlier keys.
        sliding_window: optional band width (see `build_mask`).
        query_offset: position of the first query (keys start at 0), e.g.
            the cache index during decoding. Defaults to `0`.

    Returns:
        `(B, ..., Tq, Dv)` in `value`'s dtype.

    Examples:
        >>> import numpy as np
        >>> q, k = np.ones((1, 5, 4), "float32"), np.ones((1, 7, 4), "float32")
        >>> tuple(chunked_attention(q, k, k, chunk_size=3).shape)
        (1, 5, 4)

    Reference:
        Rabe & Staats, 2021, "Self-attention Does Not Need O(n²) Memory";
        Dao et al., 2022, "FlashAttention".
    """
    masks = (query_mask, key_mask, attention_mask)
    blocks = _causal_query_blocks(
        query, key, chunk_size, use_causal_mask, query_offset
    )
    if not blocks:
        return _attend_key_blocks(
            query,
            key,
            value,
            chunk_size,
            score,
            masks,
            use_causal_mask,
            sliding_window,
            query_offset,
        )
    # Causal self-attention: the queries of block `[start, stop)` see only
    # keys `[0, stop)`, so the key blocks above the diagonal (about half the
    # work) are never visited.
    outputs = [
        _attend_key_blocks(
            query[..., start:stop, :],
            key[..., :stop, :],
            value[..., :stop, :],
            chunk_size,
            score,
            _slice_masks(masks, start, stop),
            True,
            sliding_window,
            start,
        )
        for start, stop in blocks
    ]
    return ops.concatenate(outputs, axis=-2)
