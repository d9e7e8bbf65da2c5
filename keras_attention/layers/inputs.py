"""What every attention layer does with its call inputs before projecting.

`check_call_shapes` raises a `ValueError` naming the call argument whose
shape is wrong; `prepare` casts the inputs to the layer's compute dtype,
drops the Keras masks the layer has taken over, and zeroes the positions
that take part in no output (so NaN or inf stored in padding never leaks
through $0 \\cdot \\mathrm{NaN}$).
"""

from keras import ops

from keras_attention import ops as attention_ops
from keras_attention import utils
from keras_attention.layers import cache as caches


def check_call_shapes(
    query, value, key, attention_mask=None, key_length=None, **masks
):
    """Raise a `ValueError` naming the call argument whose shape is wrong.

    Checks what is known when the call is traced: the batch and length of
    `value`/`key` against `query`, `(B, Tq)` / `(B, Tk)` padding masks and
    an `attention_mask` broadcastable to `(B, ..., Tq, Tk)`, where `Tk` is
    `key_length` when given (the length of a key/value cache: a
    keras-hub-style mask covers the whole cache) and the keys' otherwise.

    Args:
        query: `(B, Tq, dq)`.
        value: `(B, Tv, dv)`.
        key: `(B, Tv, dk)`.
        attention_mask: optional bool `(B, ..., Tq, Tk)`.
        key_length: optional int, the number of keys attended.
        **masks: `query_mask` `(B, Tq)`, `value_mask` and `key_mask`
            `(B, Tv)` (the new keys' masks).
    """
    batch, query_length = query.shape[0], query.shape[1]
    new_length = value.shape[1]
    key_length = new_length if key_length is None else key_length
    utils.check_shape(
        "value", value, (batch,) + (None,) * (len(value.shape) - 1)
    )
    utils.check_shape(
        "key", key, (batch, new_length) + (None,) * (len(key.shape) - 2)
    )
    for name, mask in masks.items():  # query_mask, value_mask, key_mask
        length = query_length if name == "query_mask" else new_length
        utils.check_shape(name, mask, (batch, length))
    heads = (None,) * max(len(getattr(attention_mask, "shape", ())) - 3, 0)
    utils.check_shape(
        "attention_mask",
        attention_mask,
        (batch, *heads, query_length, key_length),
        broadcast=True,
    )


def check_call(
    query, value, key, dims, masks, cache, index, cache_shape, cache_axis
):
    """Raise a `ValueError` naming the call argument that is wrong.

    The checks of an attention layer's call: the inputs' feature sizes
    against those it was built with, the cache and its index
    (`cache.check`), then `check_call_shapes` for rank-3 inputs (an
    `attention_mask` may span the whole cache); padding masks need rank-3
    inputs.

    Args:
        query, value, key: the call's inputs.
        dims: the feature sizes `(dq, dv, dk)` the layer was built with.
        masks: dict of `query_mask`, `value_mask`, `key_mask`,
            `attention_mask`.
        cache, index: the call's `cache` and `cache_update_index`.
        cache_shape: the cache's expected shape (`None` = any size).
        cache_axis: the cache's time axis, or `None` (a fixed-size state).
    """
    for name, x, dim in zip(
        ("query", "value", "key"), (query, value, key), dims
    ):
        utils.check_shape(name, x, (None,) * (len(x.shape) - 1) + (dim,))
    caches.check(cache, index, cache_shape, query.shape[1], cache_axis)
    masks = dict(masks)
    if len(query.shape) == 3:
        key_length = None
        if cache is not None and cache_axis is not None:
            key_length = cache.shape[cache_axis]
        check_call_shapes(
            query, value, key, masks.pop("attention_mask"), key_length,
            **masks,
        )  # fmt: skip
    elif any(masks[n] is not None for n in masks if n != "attention_mask"):
        raise ValueError(
            "`query_mask`, `value_mask` and `key_mask` need inputs of "
            f"rank 3 (B, T, d). Received: query.shape={query.shape}"
        )


def prepare(
    dtype, query, value, key, query_mask, key_mask, attention_mask, cached
):
    """The inputs ready to project: `(query, value, key)`.

    Cast to `dtype` (integer inputs too, as keras layers do), without the
    Keras masks the layer applies itself, and zero at the queries and keys
    that take part in no output (the keys only without a cache: the masks
    then describe the cache, not the new keys).

    Args:
        dtype: the layer's compute dtype.
        query, value, key: the call's inputs `(B, T, d)`.
        query_mask: optional bool `(B, Tq)`.
        key_mask: optional bool `(B, Tk)`, the value and key masks combined.
        attention_mask: optional bool `(B, ..., Tq, Tk)`.
        cached: whether the keys are written into a cache.
    """
    query, value, key = (ops.cast(x, dtype) for x in (query, value, key))
    if query_mask is not None or key_mask is not None:
        query, value, key = map(attention_ops.without_mask, (query, value, key))
    if len(query.shape) != 3:
        return query, value, key
    seen_queries, seen_keys = attention_ops.seen_positions(
        query_mask,
        None if cached else key_mask,
        None if cached else attention_mask,
    )
    return (
        attention_ops.hide_unseen(query, seen_queries),
        attention_ops.hide_unseen(value, seen_keys),
        attention_ops.hide_unseen(key, seen_keys),
    )
