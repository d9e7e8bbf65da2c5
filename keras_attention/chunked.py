r"""Memory-efficient attention: keys in blocks, online softmax, own gradient.

`chunked_attention` equals $\operatorname{softmax}(s)\, v$ with the masks of
`keras_attention.ops.build_mask` (and the score and mask modifiers of
`keras_attention.mods`), but never builds the `(Tq, Tk)` scores. Keys are
visited `chunk_size` at a time while a running maximum $m$, normaliser $l$
and weighted sum $a$ are kept per query (Milakov & Gimelshein 2018; Rabe &
Staats 2021; FlashAttention):

$$
\begin{aligned}
m' &= \max(m, \max_j s_j), & p_j &= \exp(s_j - m'), \\
l' &= l \cdot \exp(m - m') + \sum_j p_j, &
a' &= a \cdot \exp(m - m') + \sum_j p_j v_j,
\end{aligned}
$$

and the output is $a / l$. The module has five parts:

- `online_start`, `online_update`, `online_finish`: the update above, on
  its own (ring attention, `keras_attention.parallel`, folds in the key
  blocks that reach a device with it);
- `_forward`: the loop above over key blocks;
- `_backward`: the gradient of the dot-product score, block by block,
  recomputing the weights from the saved $\log l$ (as FlashAttention does),
  so training also needs O(Tq · chunk) memory; a modifier's gradient (a
  learned bias, a soft-cap) is taken there too;
- `_query_blocks`: queries split into blocks that visit only the key
  blocks a causal mask, a sliding window or a mask modifier's `key_range`
  allows (the others are never computed);
- `_attend`: one query block over its key blocks, putting them together.
"""

import math
from typing import NamedTuple

import keras
from keras import ops

from keras_attention import ops as attention_ops
from keras_attention import scores
from keras_attention import utils
from keras_attention.constants import mask_value


class _Settings(NamedTuple):
    """What stays fixed for one call: sizes, flags and modifiers."""

    chunk_size: int
    score: object  # a score layer, or None for the dot product
    use_causal_mask: bool
    sliding_window: object
    score_mod: object
    mask_mod: object
    heads: tuple

    def blockwise_gradient(self):
        """Whether `_backward` can differentiate everything itself."""
        mod = self.score_mod
        return self.score is None and (mod is None or mod.blockwise_gradient)


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


def online_start(row_shape, value_dim, sinks=None):
    """The online softmax's empty state `(m, l, a)`, float32.

    `m` and `l` are `row_shape` (`(..., Tq, 1)`), `a` `(..., Tq, Dv)`.
    Sink logits `sinks` (broadcastable to `row_shape`) start the running
    maximum and normaliser ($m = s$, $l = 1$) and add no value.
    """
    row_shape = tuple(row_shape)
    if sinks is None:
        maximum = ops.full(row_shape, mask_value("float32"), "float32")
        total = ops.zeros(row_shape, "float32")
    else:
        maximum = ops.broadcast_to(ops.cast(sinks, "float32"), row_shape)
        total = ops.ones(row_shape, "float32")
    accumulated = ops.zeros(row_shape[:-1] + (value_dim,), "float32")
    return maximum, total, accumulated


def online_update(state, logits, mask, value):
    """Fold one key block into the online softmax's state `(m, l, a)`.

    Args:
        state: `(m, l, a)` from `online_start` or a previous update.
        logits: float32 `(..., Tq, c)` of the block.
        mask: bool, broadcastable to `logits` (`None`: all visible).
        value: `(..., c, Dv)`, the block's values.

    Returns:
        The new `(m, l, a)`.
    """
    maximum, total, accumulated = state
    negative = mask_value("float32")
    if mask is not None:
        logits = ops.where(mask, logits, negative)
    block_maximum = ops.max(
        logits, axis=-1, keepdims=True, initial=negative
    )  # (..., Tq, 1); `initial`: an empty batch is no error
    new_maximum = ops.maximum(maximum, block_maximum)
    weights = ops.exp(logits - new_maximum)
    if mask is not None:
        weights = ops.where(mask, weights, 0.0)
    correction = ops.exp(maximum - new_maximum)
    total = total * correction + ops.sum(weights, -1, keepdims=True)
    update = ops.matmul(ops.cast(weights, value.dtype), value)
    accumulated = accumulated * correction + ops.cast(update, "float32")
    return new_maximum, total, accumulated  # accumulated (..., Tq, Dv)


def online_finish(state):
    """`(output a / l, log l + m)` of the online softmax's state; a query
    that saw no key gets a zero output."""
    maximum, total, accumulated = state
    total = ops.where(ops.greater(total, 0.0), total, 1.0)  # 0: sees no key
    return accumulated / total, maximum + ops.log(total)


def _forward(query, values, block_logits, block_mask, num_chunks, sinks=None):
    """The online softmax over key blocks: `(output, log l + m)`, float32.

    `block_logits(index)` and `block_mask(index)` give the float32 logits
    and the bool mask of key block `index`, both `(..., Tq, c)`-shaped;
    `sinks` as in `online_start`.
    """

    def step(index, state):
        index = _in_order(index, state[1])
        chunk_value = ops.take(values, index, axis=0)  # (..., c, Dv)
        return online_update(
            state, block_logits(index), block_mask(index), chunk_value
        )

    row_shape = tuple(ops.shape(query)[:-1]) + (1,)
    init = online_start(row_shape, values.shape[-1], sinks)
    return online_finish(utils.fori_loop(num_chunks, step, init))


def _backward(query, keys, values, block, output, log_total, upstream, n_bias):
    """Gradients of the dot-product attention over key blocks.

    With `p = exp(s - log_total)` recomputed per block and
    `δ = Σ_d dO · O` per query: `dV = pᵀ dO`, `dS = p ⊙ (dO Vᵀ − δ)`,
    `dQ = Σ_blocks dS' K`, `dK = dS'ᵀ Q` (summed over broadcast axes), where
    `dS'` is `dS` through the score modifier. Returns `(d_query, d_keys,
    d_values, d_biases, d_modifier_weights)`.
    """
    d_output = ops.cast(upstream, "float32")  # (..., Tq, Dv)
    delta = ops.sum(d_output * output, axis=-1, keepdims=True)
    query_32 = ops.cast(query, "float32")

    def step(index, carry):
        d_query, d_keys, d_values, d_biases, d_weights = carry
        index = _in_order(index, d_query)
        raw = block.raw(index)
        logits = block.logits(index, raw)
        p = ops.where(block.mask(index), ops.exp(logits - log_total), 0.0)
        chunk_value = ops.cast(ops.take(values, index, 0), "float32")
        d_p = ops.matmul(d_output, ops.swapaxes(chunk_value, -1, -2))
        d_logits = p * (d_p - delta)  # (..., Tq, c)
        d_raw, d_mod = block.modifier_grads(index, raw, d_logits)
        chunk_key = ops.cast(ops.take(keys, index, axis=0), "float32")
        d_query = d_query + ops.matmul(d_raw, chunk_key)
        start = [index] + [0] * (len(keys.shape) - 1)
        d_key = ops.matmul(ops.swapaxes(d_raw, -1, -2), query_32)
        d_keys = ops.slice_update(
            d_keys,
            start,
            attention_ops.unbroadcast(d_key, keys.shape[1:])[None],
        )
        d_value = ops.matmul(ops.swapaxes(p, -1, -2), d_output)
        d_values = ops.slice_update(
            d_values,
            start,
            attention_ops.unbroadcast(d_value, values.shape[1:])[None],
        )
        if n_bias:
            d_bias = attention_ops.unbroadcast(d_logits, block.bias_shape)[None]
            start = [index] + [0] * len(block.bias_shape)
            d_biases = ops.slice_update(d_biases, start, d_bias)
        d_weights = [a + b for a, b in zip(d_weights, d_mod)]
        return d_query, d_keys, d_values, d_biases, d_weights

    return step


def _dot_product_attention(query, keys, values, given, make_block, settings):
    """Dot-product attention over key blocks with its blockwise gradient.

    Everything the gradient uses is an argument of the custom-gradient
    function (masks, biases and the score modifier's weights too), so it
    also runs under JAX's tracing; the modifier reads its weights from those
    arguments (`keras.StatelessScope`).
    """
    mod = settings.score_mod
    variables = [] if mod is None else list(mod.trainable_weights)
    tensors = [given[name] for name in sorted(given)]
    bias = given.get("biases")

    @ops.custom_gradient
    def attention(query, keys, values, *inputs):
        named = dict(zip(sorted(given), inputs[: len(given)]))
        mapping = list(zip(variables, inputs[len(given) :]))
        with keras.StatelessScope(state_mapping=mapping):
            block = make_block(named, query, keys)
            output, log_total = _forward(
                query,
                values,
                lambda index: block.logits(index, None),
                block.mask,
                ops.shape(keys)[0],
                named.get("sinks"),
            )

        def grad(*args, upstream=None):
            # Keras's backend-agnostic signature: TensorFlow and JAX pass
            # the upstream gradient alone, PyTorch the inputs and
            # `upstream=`.
            upstream = args[0] if upstream is None else upstream
            with keras.StatelessScope(state_mapping=mapping):
                step = _backward(
                    query,
                    keys,
                    values,
                    block,
                    output,
                    log_total,
                    upstream,
                    bias is not None,
                )
                init = (
                    *(ops.zeros(ops.shape(x), "float32")
                      for x in (query, keys, values)),
                    ops.zeros_like(named["biases"]) if bias is not None
                    else ops.zeros(()),
                    [ops.zeros(v.shape, "float32") for v in variables],
                )  # fmt: skip
                d_q, d_k, d_v, d_b, d_w = utils.fori_loop(
                    ops.shape(keys)[0], step, init
                )
            gradients = [
                ops.cast(g, x.dtype)
                for g, x in ((d_q, query), (d_k, keys), (d_v, values))
            ]
            extra = {"biases": d_b}
            if "sinks" in named:
                extra["sinks"] = _sinks_gradient(
                    named["sinks"], log_total, upstream, output
                )
            gradients += [extra.get(name) for name in sorted(given)]
            return tuple(gradients) + tuple(d_w)

        return ops.cast(output, values.dtype), grad

    # Read as tensors (a copy: TensorFlow converts a variable to itself),
    # so the function itself touches no variable.
    values_of = [ops.copy(ops.convert_to_tensor(v)) for v in variables]
    return attention(query, keys, values, *tensors, *values_of)


def _sinks_gradient(sinks, log_total, upstream, output):
    """`∂L/∂s = −Σ p_s δ` (summed to the sinks' shape): the sink's weight
    `p_s = exp(s − log l)` takes no value, so only the normaliser moves."""
    d_output = ops.cast(upstream, "float32")
    delta = ops.sum(d_output * output, axis=-1, keepdims=True)
    weight = ops.exp(ops.cast(sinks, "float32") - log_total)
    return attention_ops.unbroadcast(-weight * delta, sinks.shape)


def _split_keys(x, key_length, num_chunks, chunk_size, pad_value):
    """Key-axis (last) blocks of a mask or bias, `(n, ..., c)`."""
    if x.shape[-1] == 1 and key_length != 1:  # broadcast over keys
        x = ops.broadcast_to(x, tuple(ops.shape(x)[:-1]) + (key_length,))
    return _split_chunks(x, -1, num_chunks, chunk_size, pad_value)


def _block_inputs(query, key, masks, bias, context, num_chunks, chunk_size):
    """The tensors each key block reads, by name (`None`s left out)."""
    query_mask, key_mask, attention_mask = masks
    key_length = ops.shape(key)[-2]
    if key_mask is None:
        key_mask = ops.ones((1, key_length), "bool")

    def split(x, dtype, pad_value):
        if x is None:
            return None
        x = ops.cast(x, dtype)
        return _split_keys(x, key_length, num_chunks, chunk_size, pad_value)

    given = {
        "query_mask": query_mask,
        # Padding keys of the last block are never seen: pad with False.
        "key_masks": split(key_mask, "bool", False),  # (n, B, c)
        "attention_masks": split(attention_mask, "bool", False),
        "biases": split(bias, "float32", 0),  # (n, B, ..., Tq, c)
    }
    given.update({f"context_{k}": v for k, v in (context or {}).items()})
    return {name: x for name, x in given.items() if x is not None}


class _KeyBlocks:
    """One query block's view of its key blocks, built from the tensors it
    is given (inside a custom gradient, its own arguments: JAX refuses
    values from outside)."""

    def __init__(self, named, query, keys, settings, offset, key_start):
        self.named, self.query, self.keys = named, query, keys
        self.settings, self.key_start = settings, key_start
        self.offset = named.get("offset", offset)
        self.context = {
            name[len("context_") :]: x
            for name, x in named.items()
            if name.startswith("context_")
        }
        biases = named.get("biases")
        self.bias_shape = None if biases is None else tuple(biases.shape[1:])

    def _positions(self, index):
        """`(query positions, first key position)` of key block `index`."""
        return self.offset, self.key_start + index * self.settings.chunk_size

    def _block(self, name, index):
        blocks = self.named.get(name)
        return None if blocks is None else ops.take(blocks, index, axis=0)

    def mask(self, index):
        """bool `(B, ..., Tq, c)`-broadcastable mask of key block `index`."""
        settings = self.settings
        return attention_ops.build_mask(
            ops.shape(self.query)[-2],
            settings.chunk_size,
            self.named.get("query_mask"),
            self._block("key_masks", index),
            self._block("attention_masks", index),
            settings.use_causal_mask,
            settings.sliding_window,
            *self._positions(index),
            len(self.query.shape),
            mask_mod=settings.mask_mod,
            heads=settings.heads,
            context=self.context,
        )

    def raw(self, index):
        """float32 scores `(..., Tq, c)` of key block `index`."""
        score = self.settings.score or scores.dot_logits
        chunk_key = ops.take(self.keys, index, axis=0)  # (..., c, D)
        return ops.cast(score(self.query, chunk_key), "float32")

    def logits(self, index, raw=None):
        """Scores through the modifier, plus the bias: the softmax input."""
        raw = self.raw(index) if raw is None else raw
        return attention_ops.modify_scores(
            raw,
            self.settings.score_mod,
            *self._positions(index),
            self.settings.heads,
            self.context,
            bias=self._block("biases", index),
        )

    def modifier_grads(self, index, raw, d_logits):
        """`(∂L/∂raw scores, ∂L/∂modifier weights)` from `∂L/∂logits`."""
        mod = self.settings.score_mod
        if mod is None:
            return d_logits, []
        q_idx, kv_idx, head = attention_ops.positions(
            ops.shape(self.query)[-2], self.settings.chunk_size,
            *self._positions(index), len(self.query.shape),
            self.settings.heads,
        )  # fmt: skip
        info = dict(self.context, num_heads=math.prod(self.settings.heads))
        d_raw = utils.call_with_context(
            mod.logits_gradient, raw, d_logits, q_idx, kv_idx, head, **info
        )
        d_bias = ops.sum(d_logits, axis=0, keepdims=True)  # batch summed
        return d_raw, utils.call_with_context(
            mod.bias_gradients, d_bias, q_idx, kv_idx, head, **info
        )


def _make_block(settings, offset, key_start):
    """`make_block(named, query, keys) -> _KeyBlocks`."""

    def make_block(named, query, keys):
        return _KeyBlocks(named, query, keys, settings, offset, key_start)

    return make_block


def _attend(query, key, value, tensors, settings, offset, key_start):
    """Queries over the keys `[key_start, key_start + Tk)` (one block)."""
    query_mask, key_mask, attention_mask, bias, context, sinks = tensors
    chunk = settings.chunk_size
    num_chunks = (ops.shape(key)[-2] + chunk - 1) // chunk
    # NaN or inf at padded positions must not leak through 0 · NaN.
    query = attention_ops.hide_unseen(query, query_mask, axis=-2)
    key = attention_ops.hide_unseen(key, key_mask, axis=-2)
    value = attention_ops.hide_unseen(value, key_mask, axis=-2)
    keys = _split_chunks(key, -2, num_chunks, chunk)  # (n, ..., c, D)
    values = _split_chunks(value, -2, num_chunks, chunk)
    given = _block_inputs(
        query, key, (query_mask, key_mask, attention_mask), bias, context,
        num_chunks, chunk,
    )  # fmt: skip
    if not isinstance(offset, int):
        given["offset"] = offset
    if sinks is not None:
        given["sinks"] = ops.cast(sinks, "float32")
    make_block = _make_block(settings, offset, key_start)
    if settings.blockwise_gradient():
        return _dot_product_attention(
            query, keys, values, given, make_block, settings
        )
    # A score or modifier with weights of its own: differentiated through
    # the loop (forward memory stays O(Tq · chunk)).
    block = make_block(given, query, keys)
    output, _ = _forward(
        query, values, block.logits, block.mask, num_chunks, sinks
    )
    return ops.cast(output, value.dtype)


def key_range(settings, query_start, query_stop):
    """`(low, high)`: the keys `[low, high)` that queries
    `[query_start, query_stop)` may see at most (Python ints), from the
    `use_causal_mask`, `sliding_window` and `mask_mod` of `settings`; the
    ring (`keras_attention.parallel`) skips key blocks with it too."""
    low, high = 0, float("inf")
    ranges = []
    if settings.use_causal_mask:
        ranges.append((0, query_stop))
    if settings.sliding_window is not None:
        window = settings.sliding_window
        ranges.append((query_start - window + 1, query_stop + window - 1))
    if settings.mask_mod is not None:
        ranges.append(settings.mask_mod.key_range(query_start, query_stop))
    for known in filter(None, ranges):
        low, high = max(low, known[0]), min(high, known[1])
    return max(low, 0), high


def _query_blocks(query, key, settings, offset):
    """`[(start, stop, key_low, key_high)]` query blocks, or `None`.

    For static lengths and offset: queries in blocks of whole chunks (about
    a window's width for a local mask, `max(4 · chunk_size, Tq / 8)`
    otherwise), each visiting only the keys its causal mask, window or mask
    modifier allows; `None` when no block would skip anything.
    """
    length, key_length = query.shape[-2], key.shape[-2]
    if not all(isinstance(x, int) for x in (length, key_length, offset)):
        return None
    chunk = settings.chunk_size
    # One query's visible keys: a local band (a window) wants small blocks,
    # a causal triangle a few large ones (fewer, lighter loops).
    low, high = key_range(settings, length // 2, length // 2 + 1)
    if high - low < length / 4:
        size = max(2 * chunk, high - low)
    else:
        size = max(4 * chunk, -(-length // 8))
    size = int(-(-size // chunk) * chunk)
    blocks = []
    for start in range(0, length, size):
        stop = min(start + size, length)
        low, high = key_range(settings, offset + start, offset + stop)
        blocks.append(
            (start, stop, min(low, key_length), min(high, key_length))
        )
    if all(b[2] == 0 and b[3] == key_length for b in blocks):
        return None
    return blocks


def _window(x, axis, start, stop):
    """`x[start:stop]` along `axis`, unless `x` broadcasts there (size 1)."""
    if x is None or x.shape[axis] == 1:
        return x
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, stop)
    return x[tuple(index)]


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
    *,
    attention_bias=None,
    score_mod=None,
    mask_mod=None,
    heads=(),
    context=None,
    sinks=None,
):
    r"""Attention over key blocks with an online softmax: O(Tq · chunk) memory.

    Equals $\operatorname{softmax}(\operatorname{mod}(s) + \mathrm{bias})\, v$
    with the mask of
    `keras_attention.ops.build_mask` (masked keys get weight 0; a query that
    sees no key gets 0) without building a `(Tq, Tk)` tensor. With
    `score=None` (the dot product $q k^\top$) the gradient is computed block by
    block too, a score modifier's included; another score (or a modifier
    with weights and no blockwise gradient) is differentiated through the
    loop. Key blocks that a causal mask, the sliding window or the mask
    modifier's `key_range` excludes are never visited.

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
        attention_bias: optional float tensor broadcastable to the logits
            `(B, ..., Tq, Tk)`, added after the score modifier.
        score_mod: optional `keras_attention.mods.ScoreMod`.
        mask_mod: optional `keras_attention.mods.MaskMod`.
        heads: sizes of the query's head axes (e.g. `(H_kv, G)`), for the
            modifiers' `head` index. Defaults to `()`.
        context: optional dict for the modifiers (`segment_ids`).
        sinks: optional sink logits broadcastable to `(B, ..., Tq, 1)`
            (e.g. `(1, H, 1, 1)`), in the softmax's denominator only
            (see `ops.masked_softmax`). Defaults to `None`.

    Returns:
        `(B, ..., Tq, Dv)` in `value`'s dtype.

    Examples:
        >>> import numpy as np
        >>> q, k = np.ones((1, 5, 4), "float32"), np.ones((1, 7, 4), "float32")
        >>> tuple(chunked_attention(q, k, k, chunk_size=3).shape)
        (1, 5, 4)

    Reference:
        Rabe & Staats, 2021, "Self-attention Does Not Need O(n²) Memory";
        Dao et al., 2022, "FlashAttention"; Dong et al., 2024,
        "FlexAttention".
    """
    settings = _Settings(
        chunk_size, score, use_causal_mask, sliding_window, score_mod,
        mask_mod, tuple(heads),
    )  # fmt: skip
    tensors = [query_mask, key_mask, attention_mask, attention_bias]
    blocks = _query_blocks(query, key, settings, query_offset)
    if not blocks:
        return _attend(
            query, key, value, (*tensors, context, sinks), settings,
            query_offset, 0,
        )  # fmt: skip
    outputs = []
    for start, stop, low, high in blocks:
        query_mask_, key_mask_, attention_mask_, bias_ = tensors
        sliced = (
            _window(query_mask_, -1, start, stop),
            _window(key_mask_, -1, low, high),
            _window(_window(attention_mask_, -2, start, stop), -1, low, high),
            _window(_window(bias_, -2, start, stop), -1, low, high),
            context,
            sinks,
        )
        outputs.append(
            _attend(
                query[..., start:stop, :],
                key[..., low:high, :],
                value[..., low:high, :],
                sliced,
                settings,
                query_offset + start,
                low,
            )
        )
    return ops.concatenate(outputs, axis=-2)
