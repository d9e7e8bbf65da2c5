r"""Ring attention: one sequence split over the devices of a mesh axis.

While a `keras.distribution` is active on JAX whose device mesh has the
axis a layer's `sequence_parallel` names, the layer's attention runs here.
The `N` devices of that axis each hold one block of `T / N` queries, keys
and values (`jax.shard_map`); the key/value blocks travel around the ring
(device $r$ sends to $r + 1$, `jax.lax.ppermute`, a collective-permute) and
each device folds the block it holds into the online softmax of
`keras_attention.chunked`:

$$
\begin{aligned}
m' &= \max(m, \max_j s_j), & p_j &= \exp(s_j - m'), \\
l' &= l \cdot \exp(m - m') + \sum_j p_j, &
a' &= a \cdot \exp(m - m') + \sum_j p_j v_j,
\end{aligned}
$$

so after `N` steps (`N - 1` permutes) query block $r$ has seen every key
and its output is $a / l$: the attention of the whole sequence. At step
$s$ device $r$ holds the keys of block $(r - s) \bmod N$; queries and keys
keep their absolute positions, which the masks and the score and mask
modifiers see. A causal mask (or a sliding window) skips the blocks it
hides entirely (`jax.lax.cond`: computed on no device).

Under a causal mask a contiguous split is unbalanced: device $N - 1$
attends all $N$ blocks, device 0 one, and every step waits for the
busiest. So the sequence is cut into $2N$ chunks and device $r$ holds
chunks $r$ and $2N - 1 - r$ (the zigzag layout): every device then attends
$2N + 1$ of its $4N$ chunk pairs, about half the contiguous layout's
worst. The ring picks the layout whose busiest device attends fewer pairs
(`busiest_device_work`): zigzag for causal masks and windows, contiguous
without a mask. A device's logits are one `(T/2N, T/2N)` chunk pair (or
`(T/N, T/N)` block) instead of `(T, T)`.

The gradient is JAX's, through the ring (the reverse permutes) with each
block's logits recomputed (`jax.checkpoint`), so the backward pass keeps
the same per-device size. Outputs and gradients equal ordinary attention.

This module is the one, besides `utils`, that uses a backend directly:
JAX, imported only when the ring runs. Without such a distribution, or on
TensorFlow or PyTorch, `attention` is `keras_attention.kernel.attention`,
so models that use `sequence_parallel` save and load everywhere.
"""

import itertools
import math
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from keras_attention import chunked
from keras_attention import kernel
from keras_attention import ops as attention_ops


def check_axis_name(name, value):
    """Raise a `ValueError` unless `value` is `None` or a mesh axis name."""
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(
            f"Invalid `{name}`: expected `None` or the name (a non-empty "
            f"str) of a device mesh axis, e.g. 'sequence'. Received: "
            f"{name}={value!r}"
        )


def active_distribution(axis_name):
    """The active `keras.distribution` whose mesh has `axis_name`, on JAX;
    `None` otherwise (then attention is ordinary attention)."""
    if axis_name is None or keras.config.backend() != "jax":
        return None
    distribution = keras.distribution.distribution()
    if distribution is None:
        return None
    if axis_name not in distribution.device_mesh.axis_names:
        return None
    return distribution


# `kernel.attention`'s options that the ring has no use for.
_KERNEL_ONLY = ("dropout", "training", "chunk_size", "allow_fused",
                "cache_update_index", "return_weights")  # fmt: skip


def attention(query, key, value, sequence_parallel=None, **options):
    """`keras_attention.kernel.attention`, as ring attention when it can.

    Ring attention runs while `active_distribution(sequence_parallel)` is
    set, except for queries in a key/value cache (`cache_update_index`,
    one decoding step): those run `kernel.attention`. Returned weights
    (`return_weights`) come from `kernel.attention` next to the ring's
    output: they are `(T, T)` by nature, and a compiled function that
    does not use them (a Transformer decoder returns its self-attention
    weights to a graph that drops them) never computes them. Dropout on
    the weights while training is a `ValueError` (the ring has no
    `(T, T)` weights to drop; a silent fallback would build them).
    `chunk_size` and `allow_fused` do not apply: each device already
    attends one block at a time.

    Args:
        query, key, value: the heads, as `kernel.attention` takes them.
        sequence_parallel: mesh axis name, or `None` for
            `kernel.attention`. Defaults to `None`.
        **options: `kernel.attention`'s keyword arguments.

    Returns:
        `(output, weights or None)`, as `kernel.attention`.
    """
    distribution = active_distribution(sequence_parallel)
    if distribution is None or options.get("cache_update_index") is not None:
        return kernel.attention(query, key, value, **options)
    dropout = options.get("dropout")
    if dropout is not None and dropout.rate > 0 and options.get("training"):
        raise ValueError(
            "Ring attention (`sequence_parallel`) has no dropout on the "
            "attention weights; set the attention's dropout to 0. Received: "
            f"dropout={dropout.rate}, sequence_parallel={sequence_parallel!r}"
        )
    weights = None
    if options.get("return_weights"):  # dead code in a function not using it
        weights = kernel.attention(query, key, value, **options)[1]
    for name in _KERNEL_ONLY:
        options.pop(name, None)
    output = ring_attention(
        query, key, value, sequence_parallel, distribution, **options
    )
    return output, weights


class _Ring(NamedTuple):
    """One call's settings, fixed inside the ring."""

    axis_name: str
    size: int  # devices on the axis, N
    raw: object  # raw(query, key) -> scaled scores
    use_causal_mask: bool
    sliding_window: object
    score_mod: object
    mask_mod: object
    heads: tuple
    chunks: int = 1  # per device: 1 (contiguous) or 2 (zigzag)


def ring_attention(
    query,
    key,
    value,
    axis_name="sequence",
    distribution=None,
    *,
    score=None,
    scale=1.0,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    sliding_window=None,
    score_mod=None,
    mask_mod=None,
    attention_bias=None,
    context=None,
    heads=(),
    sinks=None,
):
    r"""Attention with the sequence split over a mesh axis (JAX).

    $o_i = \sum_j \alpha_{ij} v_j$, $\alpha_{ij} = \exp(e_{ij}) /
    \sum_{j'} \exp(e_{ij'})$ over the keys query $i$ may see, as
    `kernel.attention`, computed by the `N` devices of `axis_name`: device
    $r$ keeps queries $[rT/N, (r+1)T/N)$ and the key/value blocks go around
    the ring, folded in with an online softmax. Lengths that `N` does not
    divide are padded (padded keys are masked, padded queries dropped).

    Args:
        query: `(B, *heads, Tq, D)`.
        key: `(B, *heads', Tk, D)`, head axes broadcastable to the query's.
        value: `(B, *heads', Tk, Dv)`.
        axis_name: the mesh axis the sequence is split over. Defaults to
            `"sequence"`.
        distribution: the `keras.distribution.Distribution` whose device
            mesh has `axis_name`; defaults to the active one. Its batch
            axis (`batch_dim_name`) splits the batch too when it divides.
        score, scale, query_mask, key_mask, attention_mask,
        use_causal_mask, sliding_window, score_mod, mask_mod,
        attention_bias, context, heads, sinks: as in `kernel.attention`.

    Returns:
        The output `(B, *heads, Tq, Dv)` in `value`'s dtype.

    Example:
        >>> import keras, numpy as np
        >>> mesh = keras.distribution.DeviceMesh(
        ...     (1,), ("sequence",), keras.distribution.list_devices()[:1])
        >>> distribution = keras.distribution.DataParallel(device_mesh=mesh)
        >>> x = np.ones((2, 4, 8, 16), "float32")  # (B, H, T, D)
        >>> if keras.config.backend() == "jax":
        ...     y = ring_attention(x, x, x, "sequence", distribution)
        ...     print(tuple(y.shape))
        ... else:
        ...     print((2, 4, 8, 16))
        (2, 4, 8, 16)

    Reference:
        Liu et al., 2023, "Ring Attention with Blockwise Transformers for
        Near-Infinite Context"; Brandon et al., 2023, "Striped Attention:
        Faster Ring Attention for Causal Transformers" (the load balance;
        the zigzag split is Zhu's ring-flash-attention's); Milakov &
        Gimelshein, 2018, "Online normalizer calculation for softmax".
    """
    import jax

    distribution = distribution or active_distribution(axis_name)
    if distribution is None:
        raise ValueError(
            "`ring_attention` needs a keras.distribution whose device mesh "
            f"has the axis {axis_name!r}. Received: distribution=None"
        )
    mesh = distribution.device_mesh
    size = mesh.shape[list(mesh.axis_names).index(axis_name)]
    query, key, value = map(ops.convert_to_tensor, (query, key, value))
    if sinks is not None:  # one per head, as `kernel.attention` takes them
        sinks = ops.reshape(sinks, (1, *heads, 1, 1))
    query, raw = kernel.score_function(query, score, scale)
    # NaN or inf at padded positions must not leak through 0 · NaN.
    query = attention_ops.hide_unseen(query, query_mask, axis=-2)
    key = attention_ops.hide_unseen(key, key_mask, axis=-2)
    value = attention_ops.hide_unseen(value, key_mask, axis=-2)
    length = query.shape[-2]
    ring = _Ring(
        axis_name, size, raw, use_causal_mask, sliding_window, score_mod,
        mask_mod, tuple(heads),
    )  # fmt: skip
    ring = ring._replace(chunks=_layout(ring, length, key.shape[-2]))
    arrays = _padded(
        dict(query=query, key=key, value=value, query_mask=query_mask,
             key_mask=key_mask, attention_mask=attention_mask,
             bias=attention_bias, sinks=sinks, context=dict(context or {})),
        size * ring.chunks,
    )  # fmt: skip
    arrays = _rearranged(arrays, ring)
    specs = _specs(arrays, axis_name, _batch_axis(distribution, query, ring))
    output = jax.shard_map(
        lambda arrays: _ring(arrays, ring),
        mesh=mesh.backend_mesh,
        in_specs=(specs,),
        out_specs=specs["query"],
        check_vma=False,
    )(arrays)
    output = _in_order(output, ring, -2)
    return output[..., :length, :]


def _batch_axis(distribution, query, ring):
    """The mesh axis the batch splits over, if it divides the batch."""
    mesh = distribution.device_mesh
    name = getattr(distribution, "batch_dim_name", None)
    if name is None or name == ring.axis_name or name not in mesh.axis_names:
        return None
    batch = query.shape[0]
    size = mesh.shape[list(mesh.axis_names).index(name)]
    return name if isinstance(batch, int) and batch % size == 0 else None


def _pad(x, axis, multiple, value):
    """`x` padded at the end of `axis` to a multiple of `multiple` (a size-1
    axis broadcasts and stays)."""
    if x is None or x.shape[axis] == 1:
        return x
    extra = -x.shape[axis] % multiple
    if not extra:
        return x
    pad = [[0, 0] for _ in x.shape]
    pad[axis] = [0, extra]
    return ops.pad(x, pad, constant_values=value)


def _padded(arrays, size):
    """The call's tensors with both lengths a multiple of `size`: padded
    keys are masked (a key mask is made if needed), padded queries are
    dropped after the ring."""
    key_length = arrays["key"].shape[-2]
    if key_length % size and arrays["key_mask"] is None:
        arrays["key_mask"] = ops.ones((1, key_length), "bool")
    for name, axis in (("query", -2), ("key", -2), ("value", -2)):
        arrays[name] = _pad(arrays[name], axis, size, 0)
    arrays["query_mask"] = _pad(arrays["query_mask"], -1, size, False)
    arrays["key_mask"] = _pad(arrays["key_mask"], -1, size, False)
    for name, value in (("attention_mask", False), ("bias", 0)):
        x = arrays[name]
        x = _pad(x, -2, size, value)  # (.., Tq, Tk): both lengths
        arrays[name] = _pad(x, -1, size, value)
    return {name: x for name, x in arrays.items() if x is not None}


def _specs(arrays, axis_name, batch_axis):
    """`PartitionSpec`s: the sequence axis on `axis_name` (keys of masks
    and biases stay whole, each step slices its block), the batch on
    `batch_axis` where an array has the whole batch."""
    from jax.sharding import PartitionSpec

    batch = arrays["query"].shape[0]

    def spec(x, sequence_axes):
        parts = [None] * len(x.shape)
        if batch_axis and len(x.shape) > 1 and x.shape[0] == batch:
            parts[0] = batch_axis
        for axis in sequence_axes:
            if x.shape[axis] != 1:
                parts[axis] = axis_name
        return PartitionSpec(*parts)

    specs = {}
    for name, x in arrays.items():
        if name == "context":
            specs[name] = {k: spec(v, ()) for k, v in x.items()}
        elif name == "sinks":
            specs[name] = PartitionSpec()
        elif name in ("query_mask", "key_mask"):
            specs[name] = spec(x, (-1,))
        else:  # heads, or (.., Tq, Tk) masks and biases: split queries
            specs[name] = spec(x, (-2,))
    return specs


def _chunk(device, part, size):
    """The global chunk that is part `part` of `device`'s block: `device`
    itself with one chunk per device; with two (zigzag), chunks `device`
    and `2N - 1 - device` (works on a traced device index too)."""
    return device if part == 0 else 2 * size - 1 - device


def _visible_blocks(ring, query_chunk, key_chunk):
    """`visible[r, s, p, q]`: whether a query of part `p` of device `r`
    may see a key of part `q` of device `s`'s block (NumPy bools), or
    `None` when every block is visible.

    The key range each query chunk may see comes from the chunked path's
    `key_range` (the causal mask, the sliding window and the mask
    modifier's `key_range`); the ring skips the other blocks.
    """
    size, chunks = ring.size, ring.chunks
    visible = np.zeros((size, size, chunks, chunks), bool)
    for r, p in itertools.product(range(size), range(chunks)):
        start = _chunk(r, p, size) * query_chunk
        low, high = chunked.key_range(ring, start, start + query_chunk)
        for s, q in itertools.product(range(size), range(chunks)):
            key_start = _chunk(s, q, size) * key_chunk
            visible[r, s, p, q] = (
                key_start < high and key_start + key_chunk > low
            )
    return None if visible.all() else visible


def busiest_device_work(ring, query_length, key_length):
    """Query-key pairs the busiest device attends (in blocks it cannot
    skip): the ring's time per call, as all devices wait for it."""
    multiple = ring.size * ring.chunks
    query_chunk = math.ceil(query_length / multiple)
    key_chunk = math.ceil(key_length / multiple)
    visible = _visible_blocks(ring, query_chunk, key_chunk)
    blocks = (
        ring.size * ring.chunks**2
        if visible is None
        else visible.sum(axis=(1, 2, 3)).max()
    )
    return int(blocks) * query_chunk * key_chunk


def _layout(ring, query_length, key_length):
    """Chunks per device: 2 (zigzag, Brandon et al. 2023's striping in two)
    when the busiest device then attends fewer pairs, as under a causal
    mask (device `N - 1` would see every block, device 0 one); else 1."""
    work = {
        chunks: busiest_device_work(
            ring._replace(chunks=chunks), query_length, key_length
        )
        for chunks in (1, 2)
    }
    return 2 if work[2] < work[1] else 1


def _positions(ring, length):
    """The sequence order in which each device's chunks are contiguous."""
    chunk = length // (ring.size * ring.chunks)
    order = [
        _chunk(r, p, ring.size)
        for r in range(ring.size)
        for p in range(ring.chunks)
    ]
    return np.concatenate(
        [np.arange(c * chunk, (c + 1) * chunk) for c in order]
    )


# The sequence axis of each array: its query rows, or its keys.
_QUERY_SIDE = {"query": -2, "query_mask": -1, "attention_mask": -2, "bias": -2}
_KEY_SIDE = {"key": -2, "value": -2, "key_mask": -1}


def _rearranged(arrays, ring):
    """The arrays with each device's chunks contiguous (zigzag): queries,
    keys, values and their masks along the sequence; the rows of masks and
    biases (their key columns stay in order, sliced by absolute position)."""
    if ring.chunks == 1:
        return arrays
    arrays = dict(arrays)
    for name, axis in {**_QUERY_SIDE, **_KEY_SIDE}.items():
        x = arrays.get(name)
        if x is not None and x.shape[axis] != 1:
            arrays[name] = ops.take(x, _positions(ring, x.shape[axis]), axis)
    return arrays


def _in_order(output, ring, axis):
    """`output`'s sequence back in order (undoing `_rearranged`)."""
    if ring.chunks == 1:
        return output
    positions = _positions(ring, output.shape[axis])
    return ops.take(output, np.argsort(positions), axis)


def _part(arrays, axes, part, length):
    """Part `part` (of `length` rows) of the named arrays along `axes`."""
    import jax

    arrays = dict(arrays)
    for name, axis in axes.items():
        x = arrays.get(name)
        if x is not None and x.shape[axis] != 1:
            start = part * length
            arrays[name] = jax.lax.slice_in_dim(
                x, start, start + length, 1, axis
            )
    return arrays


def _ring(arrays, ring):
    """One device's part: its query chunks over every key/value chunk."""
    import jax

    chunks = ring.chunks
    query_chunk = arrays["query"].shape[-2] // chunks
    key_chunk = arrays["key"].shape[-2] // chunks
    index = jax.lax.axis_index(ring.axis_name)
    folds = [
        jax.checkpoint(
            _fold(
                _part(arrays, _QUERY_SIDE, p, query_chunk), ring,
                _chunk(index, p, ring.size) * query_chunk,
            )
        )
        for p in range(chunks)
    ]  # fmt: skip
    visible = _visible_blocks(ring, query_chunk, key_chunk)

    def visit(states, travelling, step):
        source = (index - step) % ring.size  # whose keys we hold
        states = list(states)
        for q in range(chunks):
            keys = _part(travelling, _KEY_SIDE, q, key_chunk)
            key_start = _chunk(source, q, ring.size) * key_chunk
            for p in range(chunks):
                if visible is None:
                    states[p] = folds[p](states[p], keys, key_start)
                    continue
                states[p] = jax.lax.cond(
                    jax.numpy.asarray(visible)[index, source, p, q], folds[p],
                    lambda state, *_: state, states[p], keys, key_start,
                )  # fmt: skip
        return tuple(states)

    def step(carry, step):
        states, travelling = carry
        # Send on first: the permute can overlap the block's compute.
        arrived = jax.lax.ppermute(
            travelling, ring.axis_name,
            [(r, (r + 1) % ring.size) for r in range(ring.size)],
        )  # fmt: skip
        return (visit(states, travelling, step), arrived), None

    travelling = {name: arrays[name] for name in _KEY_SIDE if name in arrays}
    row_shape = tuple(arrays["query"].shape[:-2]) + (query_chunk, 1)
    sinks, value_dim = arrays.get("sinks"), arrays["value"].shape[-1]
    states = tuple(
        chunked.online_start(row_shape, value_dim, sinks) for _ in range(chunks)
    )
    (states, travelling), _ = jax.lax.scan(
        step, (states, travelling), jax.numpy.arange(ring.size - 1)
    )
    states = visit(states, travelling, ring.size - 1)
    outputs = [chunked.online_finish(state)[0] for state in states]
    output = outputs[0] if chunks == 1 else ops.concatenate(outputs, axis=-2)
    return ops.cast(output, arrays["value"].dtype)


def _fold(arrays, ring, query_start):
    """`fold(state, travelling, key_start)`: the online softmax's update
    with one key block (keys from `key_start` on)."""
    import jax

    query = arrays["query"]
    query_length = query.shape[-2]
    context = arrays.get("context", {})

    def columns(x, key_start, key_length):
        """A mask's or bias's columns of this key block."""
        if x is None or x.shape[-1] == 1:
            return x
        axis = len(x.shape) - 1
        return jax.lax.dynamic_slice_in_dim(x, key_start, key_length, axis)

    def fold(state, travelling, key_start):
        key, value = travelling["key"], travelling["value"]
        key_length = key.shape[-2]
        raw = ops.cast(ring.raw(query, key), "float32")  # (.., Tq/N, Tk/N)
        logits = attention_ops.modify_scores(
            raw, ring.score_mod, query_start, key_start, ring.heads, context,
            bias=columns(arrays.get("bias"), key_start, key_length),
        )  # fmt: skip
        mask = attention_ops.build_mask(
            query_length, key_length, arrays.get("query_mask"),
            travelling.get("key_mask"),
            columns(arrays.get("attention_mask"), key_start, key_length),
            ring.use_causal_mask, ring.sliding_window, query_start,
            key_start, len(raw.shape), mask_mod=ring.mask_mod,
            heads=ring.heads, context=context,
        )  # fmt: skip
        return chunked.online_update(state, logits, mask, value)

    return fold


def logits_block_size(batch_size, num_heads, length, num_devices):
    """Entries of the largest logits tensor one device holds: ring
    attention's `(B, H, T/N, T/N)` block against ordinary attention's
    `(B, H, T, T)` (for the benchmark and the docs)."""
    block = math.ceil(length / num_devices)
    return batch_size * num_heads * block * block
