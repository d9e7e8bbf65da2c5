r"""The attention kernel: the one core under every attention layer.

A layer projects its inputs into queries, keys and values and calls
`attention` once; everything after the projections happens here:

1. the masks (padding, explicit, causal, sliding window, a mask modifier,
   the unwritten end of a key/value cache) become one boolean mask
   (`keras_attention.ops.build_mask`);
2. the logits: the score (the dot product of pre-scaled queries, or any
   score layer), then the score modifier and the additive bias
   (`keras_attention.ops.modify_scores`);
3. the softmax (float32; masked keys get 0, a query that sees no key gets a
   zero output, an optional sink logit per head in the denominator) and
   the weighted sum of the values.

It picks one of four paths that give the same numbers:

- **dense**: the full `(Tq, Tk)` logits, needed for returned weights and
  dropout on the weights;
- **chunked**: key blocks with an online softmax and a blockwise gradient,
  O(Tq · chunk) memory (`keras_attention.chunked`), when `chunk_size` is
  set;
- **fused**: the backend's `keras.ops.dot_product_attention` where it is the
  faster kernel (`utils.prefers_fused_attention`), for a dot-product score
  with as many key as query heads;
- **cached**: any of the above for queries at `cache_update_index` of a
  key/value cache: the queries' positions start there and the keys past
  the last written one are never seen.

Tensors are in the heads layout: `query` `(B, *heads, Tq, D)`, `key`
`(B, *heads', Tk, D)` and `value` `(B, *heads', Tk, Dv)` whose head axes
broadcast against the query's (e.g. `(B, H_kv, 1, Tk, D)` against
`(B, H_kv, G, Tq, D)` for grouped-query attention), masks and bias
broadcastable to the logits `(B, *heads, Tq, Tk)`.
"""

from typing import NamedTuple

import keras
from keras import ops

from keras_attention import chunked
from keras_attention import ops as attention_ops
from keras_attention import scores
from keras_attention import utils
from keras_attention.constants import mask_value


class _Spec(NamedTuple):
    """One call's settings, fixed across the paths."""

    masks: tuple  # query_mask, key_mask, attention_mask
    use_causal_mask: bool
    sliding_window: object
    offset: object  # position of the first query
    score_mod: object
    mask_mod: object
    bias: object
    context: dict
    heads: tuple

    def mask(self, query_length, key_length, rank):
        """The combined bool mask, broadcastable to the logits."""
        return attention_ops.build_mask(
            query_length, key_length, *self.masks, self.use_causal_mask,
            self.sliding_window, self.offset, rank=rank,
            mask_mod=self.mask_mod, heads=self.heads, context=self.context,
        )  # fmt: skip

    def logits(self, raw):
        """`raw` scores through the score modifier, plus the bias."""
        return attention_ops.modify_scores(
            raw, self.score_mod, self.offset, 0, self.heads, self.context,
            bias=self.bias,
        )  # fmt: skip


def dot_product_scale(score, dim, scale=1.0):
    """`c` if `score` times `scale` is `c · qᵀk` for queries of size `dim`,
    else `None` (`score=None` is the plain dot product)."""
    if score is None:
        return scale
    own = getattr(score, "dot_product_scale", lambda dim: None)(dim)
    return None if own is None else own * scale


def score_function(query, score=None, scale=1.0):
    """`(query, raw)`: the queries the scores read, and `raw(query, key)`,
    their `(..., Tq, Tk)` scores times `scale`.

    A dot-product score (`dot_product_scale`) scales the queries once,
    O(T·D) instead of O(T²) (then `raw` is the plain dot product); any
    other score is called and its scores multiplied by `scale`.
    """
    dot_scale = dot_product_scale(score, query.shape[-1], scale)
    if dot_scale is not None:
        if dot_scale != 1.0:
            query = query * ops.cast(dot_scale, query.dtype)
        return query, scores.dot_logits

    def raw(query, key):
        logits = score(query, key)
        if scale not in (None, 1.0):
            logits = logits * ops.cast(scale, logits.dtype)
        return logits

    return query, raw


def attention(
    query,
    key,
    value,
    *,
    score=None,
    scale=1.0,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    sliding_window=None,
    cache_update_index=None,
    score_mod=None,
    mask_mod=None,
    attention_bias=None,
    context=None,
    heads=(),
    chunk_size=None,
    dropout=None,
    training=None,
    return_weights=False,
    sinks=None,
    allow_fused=True,
):
    r"""Attention of projected queries, keys and values; the one core.

    $o_i = \sum_j \alpha_{ij} v_j$ with
    $\alpha_{ij} = \exp(e_{ij}) / (\exp(s_h) + \sum_{j'} \exp(e_{ij'}))$ over
    the keys $j$ query $i$ may see, where
    $e_{ij} = \operatorname{mod}(c \cdot \operatorname{score}(q_i, k_j))
    + \mathrm{bias}_{ij}$ and the sink $s_h$ is absent
    ($\exp(s_h) = 0$) unless `sinks` is given. A query that sees no key gets
    a zero output.

    Args:
        query: `(B, *heads, Tq, D)`.
        key: `(B, *heads', Tk, D)`, head axes broadcastable to the query's.
        value: `(B, *heads', Tk, Dv)`.
        score: `None` for the dot product, or a score layer / callable
            `(query, key) -> (..., Tq, Tk)`; a score whose
            `dot_product_scale` says it is a scaled dot product runs the
            dot-product paths. Defaults to `None`.
        scale: multiplies the logits (e.g. `1 / temperature`). Defaults to
            `1.0`.
        query_mask: optional bool `(B, Tq)`.
        key_mask: optional bool `(B, Tk)`.
        attention_mask: optional bool, broadcastable to the logits with
            the batch first (e.g. `(B, Tq, Tk)`).
        use_causal_mask: whether query $i$ only sees keys up to its
            position. Defaults to `False`.
        sliding_window: optional band width (see `ops.build_mask`).
        cache_update_index: `None`, or the position (int or scalar tensor)
            of the first query in a key/value cache of `Tk` entries: keys
            past `cache_update_index + Tq - 1` are never seen.
        score_mod: optional `keras_attention.mods.ScoreMod`.
        mask_mod: optional `keras_attention.mods.MaskMod`.
        attention_bias: optional float, broadcastable to the logits.
        context: optional dict for the modifiers (`segment_ids`).
        heads: sizes of the query's head axes, e.g. `(H,)` or
            `(H_kv, G)`, for the modifiers' `head` index. Defaults to `()`.
        chunk_size: if set, keys per block of the chunked path (used unless
            weights are returned or dropout is active).
        dropout: optional dropout layer on the weights.
        training: whether dropout is active.
        return_weights: whether to return the weights (dense path).
        sinks: optional float sink logits, one per head, shaped like
            `heads` (e.g. `(H,)`).
        allow_fused: whether the fused kernel may run. Defaults to `True`.

    Returns:
        Tuple `(output, weights)`: `(B, *heads, Tq, Dv)` in `value`'s
        dtype, and float32 weights `(B, *heads, Tq, Tk)` if
        `return_weights`, else `None`.
    """
    query, key, value = map(ops.convert_to_tensor, (query, key, value))
    offset = 0 if cache_update_index is None else cache_update_index
    if cache_update_index is not None:  # never the unwritten cache end
        written = ops.arange(ops.shape(key)[-2]) < offset + ops.shape(query)[-2]
        key_mask = attention_ops.and_masks(key_mask, written[None])
    spec = _Spec(
        (query_mask, key_mask, attention_mask), use_causal_mask,
        sliding_window, offset, score_mod, mask_mod, attention_bias,
        context or {}, tuple(heads),
    )  # fmt: skip
    if sinks is not None:
        sinks = ops.reshape(sinks, (1, *heads, 1, 1))
    dot_scale = dot_product_scale(score, query.shape[-1], scale)
    use_dropout = dropout is not None and dropout.rate > 0 and bool(training)
    exact = return_weights or use_dropout
    if allow_fused and not (exact or chunk_size or sinks is not None):
        if _fusable(query, key, value, dot_scale, score_mod):
            return _fused(query, key, value, dot_scale, spec), None
    query, raw_scores = score_function(query, score, scale)
    if dot_scale is not None:
        score = None
    if chunk_size and not exact:
        output = chunked.chunked_attention(
            query, key, value, chunk_size, score, *spec.masks,
            use_causal_mask, sliding_window, offset, attention_bias=spec.bias,
            score_mod=score_mod, mask_mod=mask_mod, heads=spec.heads,
            context=spec.context, sinks=sinks,
        )  # fmt: skip
        return output, None
    raw = raw_scores(query, key)
    mask = spec.mask(ops.shape(query)[-2], ops.shape(key)[-2], len(raw.shape))
    output, weights = attention_ops.attend(
        spec.logits(raw), value, mask, dropout if use_dropout else None,
        training, sinks,
    )  # fmt: skip
    return output, weights if return_weights else None


def _fusable(query, key, value, dot_scale, score_mod):
    """Whether the backend's fused `dot_product_attention` runs (where it
    is the faster one, see `utils.prefers_fused_attention`)."""
    return (
        utils.prefers_fused_attention()
        and dot_scale is not None
        and len(query.shape) == 4  # (B, H, T, D)
        and key.shape[1] == query.shape[1]  # as many key heads: not GQA
        and value.shape[-1] == query.shape[-1]
        and (score_mod is None or score_mod.additive)
        # float16 logits can overflow: ours are computed in float32.
        and keras.backend.standardize_dtype(query.dtype) != "float16"
    )


def _fused(query, key, value, dot_scale, spec):
    """`keras.ops.dot_product_attention` of `(B, H, T, D)` heads.

    The backend's fused kernel (PyTorch's scaled-dot-product attention),
    as keras's layer uses it; an additive modifier and the bias enter as
    its bias (`modify_scores` of zero scores), and a query that sees no key
    gets a zero output, as on the other paths.
    """
    q_length, k_length = ops.shape(query)[-2], ops.shape(key)[-2]
    mask = spec.mask(q_length, k_length, 4)  # (B, H, Tq, Tk)-broadcastable
    bias = None
    if spec.score_mod is not None or spec.bias is not None:
        bias = spec.logits(ops.zeros((1, 1, q_length, k_length), "float32"))
    fused_mask = mask
    if bias is not None and mask is not None:  # one or the other
        bias = ops.where(mask, bias, mask_value("float32"))
        fused_mask = None
    query, key, value = (ops.swapaxes(x, 1, 2) for x in (query, key, value))
    output = ops.dot_product_attention(
        query, key, value, bias=bias, mask=fused_mask, scale=dot_scale
    )  # (B, Tq, H, D)
    output = ops.swapaxes(output, 1, 2)  # (B, H, Tq, D)
    if mask is None:
        return output
    seen = ops.any(mask, axis=-1, keepdims=True)  # (B, H, Tq, 1)
    return ops.where(seen, output, ops.zeros_like(output))
