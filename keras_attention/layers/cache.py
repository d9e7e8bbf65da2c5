"""Decoding caches: checked, written in place, created empty.

Every cached attention layer follows one contract: `initial_cache(
batch_size, max_length)` gives an empty cache, then `layer(query, value,
use_causal_mask=True, cache=cache, cache_update_index=i)` returns
`(output, new_cache)` for one token or a prefill of several at index 0.
The cache's layout is the layer's (e.g. `(B, 2, T_max, H_kv, D)` keys and
values for `MultiHeadAttention`, keras-hub's `CachedMultiHeadAttention`
layout); these helpers take its time axis.
"""

import numbers

from keras import ops

from keras_attention import utils


def check(cache, index, expected, new_tokens, axis):
    """Raise a `ValueError` naming `cache` or `cache_update_index`.

    Args:
        cache: the cache passed to the call, or `None`.
        index: the call's `cache_update_index` (int, scalar tensor or
            `None`).
        expected: the cache's expected shape, `None` for any size.
        new_tokens: number of new queries (static, or `None`).
        axis: the cache's time axis, or `None` for a state of fixed size
            (any index fits).
    """
    if cache is None:
        if index is not None:
            raise ValueError(
                "`cache_update_index` needs a `cache`. Received: "
                f"cache=None, cache_update_index={index}"
            )
        return
    utils.check_shape("cache", cache, expected)
    if isinstance(index, int) and not isinstance(index, bool):
        length = None if axis is None else cache.shape[axis]
        fits = None in (length, new_tokens) or index + new_tokens <= length
        if index < 0 or not fits:
            raise ValueError(
                "Invalid value for argument `cache_update_index`: the "
                f"{new_tokens} new token(s) must fit in the cache of length "
                f"{length}. Received: cache_update_index={index}"
            )


def write(cache, update, index, axis):
    """`cache` with `update` written at `index` along `axis` (time).

    One write into the whole cache: each copy of it costs a pass over the
    cache, the bulk of a decoding step's memory work. For one token (a
    decoding step) a `where` against its position is one pass, faster on
    CPU than a dynamic-update-slice copy.
    """
    update = ops.cast(update, cache.dtype)
    if update.shape[axis] == 1:
        length = ops.shape(cache)[axis]
        shape = [1] * len(cache.shape)
        shape[axis] = length
        position = ops.reshape(ops.arange(length) == index, shape)
        return ops.where(position, update, cache)
    start = [0] * len(cache.shape)
    start[axis] = index
    return ops.slice_update(cache, start, update)


def check_batch_and_length(batch_size, max_length):
    """Raise a `ValueError` naming `batch_size` or `max_length` unless each
    is a positive int or a (traced) scalar tensor, as in `initial_cache`."""
    for name, value in (("batch_size", batch_size), ("max_length", max_length)):
        if isinstance(value, numbers.Number) or not hasattr(value, "shape"):
            utils.check_positive_int(name, value)  # a tensor may be traced
