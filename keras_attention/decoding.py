"""Autoregressive decoding: greedy search, beam search and sampling.

Pure functions of a `step_fn` over `keras.ops.while_loop` with a fixed
`max_length`, so they compile under XLA (`jit_compile=True`), contain no
custom ops and run inside an exported SavedModel.

`step_fn(tokens, state, index) -> (logits, new_state)` maps the previous
tokens `(B,)` int, a decoder state (any nest of tensors with batch first) and
the step index to next-token logits `(B, V)`. For `beam_search` with a
coverage penalty it also returns the step's attention weights:
`(logits, new_state, alignments (B, S))`. Beam search tiles the state over
the beams itself: the caller never tiles.

Returned tokens exclude the start token; positions after the first `end_id`
hold `pad_id`. Reserved ids: pad 0, start 1, end 2, unknown 3.

All three take the logit controls of Hugging Face's `GenerationConfig`
(`min_length`, `no_repeat_ngram_size`, `repetition_penalty`,
`bad_token_ids`), applied to every step's logits by one `Controls`.
"""

import dataclasses
import numbers

import keras
from keras import ops

from keras_attention import utils
from keras_attention.constants import mask_value


def _call_step(step_fn, tokens, state, index):
    """Run `step_fn`; returns `(logits float32, state, alignments or None)`."""
    result = step_fn(tokens, state, index)
    if len(result) not in (2, 3):
        raise ValueError(
            "`step_fn` must return `(logits, state)` or `(logits, state, "
            f"alignments)`. Received: a tuple of {len(result)}"
        )
    alignments = result[2] if len(result) == 3 else None
    return ops.cast(result[0], "float32"), result[1], alignments


def _check(max_length, end_id, pad_id):
    utils.check_positive_int("max_length", max_length)
    if end_id is not None and end_id == pad_id:
        raise ValueError(
            f"`end_id` and `pad_id` must differ. Received: {end_id=}, {pad_id=}"
        )


def _running(index, max_length, finished):
    """Loop condition: steps left and a sequence not yet finished."""
    return ops.logical_and(
        index < max_length, ops.logical_not(ops.all(finished))
    )


def _write(tokens, index, values):
    """`tokens[..., index] = values`, as an elementwise `where` (no scatter).

    A `where` against a one-hot position is portable: no XLA-only
    `DynamicUpdateSlice`, and cheap for the short outputs decoded here.
    """
    position = ops.equal(ops.arange(ops.shape(tokens)[-1]), index)
    return ops.where(position, ops.expand_dims(values, -1), tokens)


def _token_ids(ids, vocab_size=None):
    """`bad_token_ids` as a sorted tuple of distinct ints (`None` if empty).

    Raises a `ValueError` naming `bad_token_ids` unless `ids` is a list of
    int ids `>= 0` (and `< vocab_size`, when known).
    """
    if ids is None:
        return None
    iterable = hasattr(ids, "__iter__") and not isinstance(ids, (str, bytes))
    items = list(ids) if iterable and not isinstance(ids, dict) else [ids]
    bound = "" if vocab_size is None else f" < {vocab_size}"
    for item in items:
        ok = isinstance(item, numbers.Integral) and not isinstance(item, bool)
        ok = ok and item >= 0 and (vocab_size is None or item < vocab_size)
        if not (iterable and ok):
            raise ValueError(
                "Invalid value for argument `bad_token_ids`: expected a list "
                f"of int token ids >= 0{bound} (the vocabulary size), or "
                f"None. Received: bad_token_ids={ids!r}"
            )
    return tuple(sorted({int(item) for item in items})) or None


def _history(tokens, index):
    """Generated tokens `(N, L)`, `-1` from `index` on (not generated yet).

    `tokens` is `(N, L)`, or `(B, W, L)` for beams (flattened to `B * W`
    rows, the order of the beams' logits).
    """
    length = tokens.shape[-1]
    tokens = ops.reshape(ops.cast(tokens, "int32"), (-1, length))
    return ops.where(ops.arange(length) < index, tokens, -1)


def _contains(values, vocab):
    """Whether each token of `vocab (V,)` is among `values (N, K)`: `(N, V)`.

    A compare against every id (elementwise, no scatter); `-1` matches none.
    """
    matches = ops.equal(ops.expand_dims(values, -1), vocab)  # (N, K, V)
    return ops.any(matches, axis=-2)


def _repeated_ngrams(history, index, vocab, size):
    """Tokens that would complete an n-gram already in `history`: `(N, V)`.

    Window `j` holds `history[j : j + size]`; it bans its last token when it
    lies wholly before `index` and its first `size - 1` tokens equal the
    last `size - 1` generated ones.
    """
    length = history.shape[-1]
    count = length - size + 1  # windows: (N, count) each
    windows = [history[:, k : k + count] for k in range(size)]
    repeats = ops.not_equal(windows[-1], -1)  # complete before `index`
    positions = ops.arange(length)
    for k in range(size - 1):  # the k-th of the last size - 1 tokens
        at = ops.equal(positions, index - size + 1 + k)  # one-hot position
        last = ops.sum(ops.where(at, history, 0), axis=-1)  # (N,)
        same = ops.equal(windows[k], ops.expand_dims(last, -1))
        repeats = ops.logical_and(repeats, same)
    return _contains(ops.where(repeats, windows[-1], -1), vocab)


@dataclasses.dataclass(frozen=True)
class Controls:
    r"""The logit controls of Hugging Face's `GenerationConfig`, one place.

    Every decoder calls `apply` on each step's logits $\ell$ `(N, V)`
    before it chooses, with $y_{<t}$ the row's `t` generated tokens (the
    start token is not one):

    - `repetition_penalty` $\theta$ (CTRL, Keskar et al. 2019): for every
      distinct $v \in y_{<t}$, $\ell_v \leftarrow \ell_v / \theta$ if
      $\ell_v > 0$, else $\ell_v \theta$ (`1.0`: off).
    - `min_length` $m$: $\ell_{\mathrm{end}}$ masked while $t < m$, so no
      end id among the first $m$ tokens (`0`: off). Unlike HF's
      `min_length`, the start token is not counted (HF's `min_new_tokens`).
      $m \ge$ `max_length` is allowed: no row ends.
    - `no_repeat_ngram_size` $n$: $\ell_v$ masked if
      $(y_{t-n+1}, \ldots, y_{t-1}, v)$ already occurs in $y_{<t}$ (`0`:
      off); with beams, each beam's own history.
    - `bad_token_ids`: these ids are always masked (`None`: off).

    The penalty comes first, so masked logits are exactly `mask_value()`.
    Beam search renormalises the controlled logits (`log_softmax`), so its
    scores are log-probabilities and `beam_width=1` is greedy search; HF
    adds the processed log-probabilities instead. Defaults change nothing.
    The masks compare the history with every id: `O(N L V)` per step when a
    history control is on, no scatter. Controls that leave no token (say
    `no_repeat_ngram_size=1` over more steps than the vocabulary has
    tokens) make every logit `mask_value()`: the choice is then arbitrary
    (the lowest id, in greedy search), as HF's is then undefined.

    Args:
        min_length: int `>= 0`. Defaults to `0`.
        no_repeat_ngram_size: int `>= 0`. Defaults to `0`.
        repetition_penalty: number `> 0`. Defaults to `1.0`.
        bad_token_ids: list of int ids, or `None`; kept as a sorted tuple.
            Defaults to `None`.

    Examples:
        >>> import numpy as np
        >>> controls = Controls(repetition_penalty=2.0, bad_token_ids=[3])
        >>> logits = np.array([[4.0, -4.0, 1.0, 1.0]], "float32")
        >>> tokens = np.array([[0, 1, 0]])  # generated 0 and 1 so far
        >>> np.asarray(controls.apply(logits, tokens, 2)).tolist()
        [[2.0, -8.0, 1.0, -1000000000.0]]
    """

    min_length: int = 0
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    bad_token_ids: tuple = None

    def __post_init__(self):
        for name in ("min_length", "no_repeat_ngram_size"):
            utils.check_number(
                name, getattr(self, name), 0, integer=True, include_low=True
            )
        utils.check_positive_number(
            "repetition_penalty", self.repetition_penalty
        )
        ids = _token_ids(self.bad_token_ids)
        object.__setattr__(self, "bad_token_ids", ids)

    def check_vocabulary(self, vocab_size):
        """Raise a `ValueError` naming `bad_token_ids` if an id is not
        below `vocab_size` (`None`: unknown, no check)."""
        _token_ids(self.bad_token_ids, vocab_size)

    def apply(self, logits, tokens, index, end_id=None):
        """The controlled logits at step `index`.

        Args:
            logits: float `(N, V)`, the step's logits.
            tokens: int `(N, L)` (or `(B, W, L)` for `N = B * W` beams),
                the tokens generated so far; positions from `index` on are
                ignored.
            index: int scalar, the step (the number of tokens generated).
            end_id: id that `min_length` holds back, or `None`.

        Returns:
            float32 `(N, V)`; the input itself when every control is off.
        """
        if self == Controls():
            return logits
        logits = ops.cast(logits, "float32")
        self.check_vocabulary(logits.shape[-1])
        vocab = ops.arange(ops.shape(logits)[-1], dtype="int32")  # (V,)
        history = _history(tokens, index)  # (N, L)
        theta = self.repetition_penalty
        if theta != 1.0:  # first, so that masks stay exactly mask_value()
            penalised = ops.where(logits > 0, logits / theta, logits * theta)
            logits = ops.where(_contains(history, vocab), penalised, logits)
        banned = []  # masks broadcastable to (N, V)
        if self.min_length and end_id is not None:
            early = ops.less(index, self.min_length)
            banned.append(ops.logical_and(ops.equal(vocab, end_id), early))
        size = self.no_repeat_ngram_size
        if size and size <= history.shape[-1]:  # else no n-gram fits
            banned.append(_repeated_ngrams(history, index, vocab, size))
        if self.bad_token_ids:
            bad = ops.convert_to_tensor([self.bad_token_ids], "int32")
            banned.append(_contains(bad, vocab))  # (1, V)
        for mask in banned:
            logits = ops.where(mask, mask_value(), logits)
        return logits


def _decode(
    choose,
    step_fn,
    initial_state,
    start_ids,
    max_length,
    end_id,
    pad_id,
    controls,
):
    """Shared loop of greedy search and sampling: `choose(logits, index)`
    picks from the logits under the `Controls`."""
    _check(max_length, end_id, pad_id)
    start_ids = ops.cast(start_ids, "int32")
    batch = ops.shape(start_ids)[0]
    tokens = ops.full((batch, max_length), pad_id, "int32")  # (B, L)
    finished = ops.zeros((batch,), "bool")

    def body(index, tokens, last, finished, state):
        logits, state, _ = _call_step(step_fn, last, state, index)  # (B, V)
        logits = controls.apply(logits, tokens, index, end_id)
        chosen = ops.cast(choose(logits, index), "int32")  # (B,)
        chosen = ops.where(finished, pad_id, chosen)
        tokens = _write(tokens, index, chosen)
        if end_id is not None:
            finished = ops.logical_or(finished, ops.equal(chosen, end_id))
        return index + 1, tokens, chosen, finished, state

    loop_vars = (0, tokens, start_ids, finished, initial_state)
    return ops.while_loop(
        lambda index, tokens, last, finished, state: _running(
            index, max_length, finished
        ),
        body,
        loop_vars,
    )[1]


def greedy_search(
    step_fn,
    initial_state,
    start_ids,
    max_length,
    end_id=None,
    pad_id=0,
    min_length=0,
    no_repeat_ngram_size=0,
    repetition_penalty=1.0,
    bad_token_ids=None,
):
    r"""Decode by taking the most likely token at every step.

    $y_t = \operatorname{argmax}_v p(v \mid y_{<t}, x)$, over the logits
    under the `Controls` (off by default).

    Args:
        step_fn: `(tokens (B,), state, index) -> (logits (B, V), state)`.
        initial_state: nest of tensors with batch first.
        start_ids: int `(B,)`, the first input tokens.
        max_length: int, the number of tokens generated.
        end_id: id that ends a sequence, or `None`. Defaults to `None`.
        pad_id: id written after the end token. Defaults to `0`.
        min_length: no `end_id` among the first `min_length` tokens.
            Defaults to `0`.
        no_repeat_ngram_size: no n-gram of this size twice in a row's
            tokens; `0` for none. Defaults to `0`.
        repetition_penalty: CTRL's $\theta$: the logit of every token
            already generated is divided by it if positive, else
            multiplied. Defaults to `1.0`.
        bad_token_ids: list of ids never emitted, or `None`. Defaults to
            `None`.

    Returns:
        int32 tokens `(B, max_length)`.

    Examples:
        >>> import numpy as np
        >>> def step_fn(tokens, state, index):  # always predicts token + 1
        ...     return keras.ops.one_hot(tokens + 1, 6), state
        >>> np.asarray(greedy_search(step_fn, (), np.array([1]), 5, end_id=4))
        array([[2, 3, 4, 0, 0]], dtype=int32)
        >>> def prefers_3(tokens, state, index):  # then 4, 5, end 2
        ...     scores = keras.ops.convert_to_tensor([[0, 0, 1, 4, 3, 2.0]])
        ...     return scores, state
        >>> np.asarray(greedy_search(prefers_3, (), np.array([1]), 5, 2))
        array([[3, 3, 3, 3, 3]], dtype=int32)
        >>> np.asarray(greedy_search(
        ...     prefers_3, (), np.array([1]), 5, 2, no_repeat_ngram_size=1
        ... ))
        array([[3, 4, 5, 2, 0]], dtype=int32)
    """
    controls = Controls(
        min_length, no_repeat_ngram_size, repetition_penalty, bad_token_ids
    )

    def choose(logits, index):
        return utils.argmax(logits)

    return _decode(
        choose,
        step_fn,
        initial_state,
        start_ids,
        max_length,
        end_id,
        pad_id,
        controls,
    )


def _int32(constant):
    """A 32-bit constant as the int32 with the same bits."""
    return constant - (1 << 32) if constant >= 1 << 31 else constant


def _shift_xor(x, bits):
    """`x ^ (x >>> bits)` with a logical (unsigned) right shift of int32."""
    shifted = ops.bitwise_and(ops.right_shift(x, bits), (1 << 32 - bits) - 1)
    return ops.bitwise_xor(x, shifted)


def _uniform(seed, index, shape):
    """Stateless uniform `(0, 1)` noise from `(seed, index, position)`.

    A counter-based hash (the murmur3 finaliser) in int32 `keras.ops`, whose
    products wrap modulo 2³² on every backend, with logical shifts written
    out: the same bits as the uint32 hash, on TensorFlow, JAX and PyTorch
    alike (uint32 arithmetic is not: JAX rejects the constants and PyTorch
    widens uint32 to int64). Pure, reproducible, XLA-compilable; the seed
    may be a tensor.
    """
    count = ops.reshape(ops.arange(shape[0] * shape[1], dtype="int32"), shape)
    seed = ops.cast(seed, "int32")
    step = ops.cast(index, "int32")
    x = (
        count * _int32(0x9E3779B1)
        + step * _int32(0x85EBCA77)
        + seed * _int32(0xC2B2AE3D)
    )
    x = _shift_xor(x, 16) * _int32(0x85EBCA6B)
    x = _shift_xor(x, 13) * _int32(0xC2B2AE35)
    x = _shift_xor(x, 16)
    bits = ops.bitwise_and(ops.right_shift(x, 8), (1 << 24) - 1)  # 24 bits
    return (ops.cast(bits, "float32") + 0.5) / float(1 << 24)  # never 0


def check_sampling_options(
    temperature=1.0, top_k=None, top_p=None, vocab_size=None
):
    """Raise a `ValueError` naming the first bad option of `sample`.

    The one check of the sampling options, shared by `sample`,
    `filter_logits` and `generate`'s `DecodingOptions`.

    Args:
        temperature: a number `> 0`.
        top_k: an int `> 0` (at most `vocab_size`, when known), or `None`.
        top_p: a number in $(0, 1]$, or `None`.
        vocab_size: the size `V` of the logits, or `None` if unknown.
    """
    utils.check_positive_number("temperature", temperature)
    utils.check_positive_int("top_k", top_k, allow_none=True)
    if None not in (top_k, vocab_size) and top_k > vocab_size:
        raise ValueError(
            "Invalid value for argument `top_k`: expected at most the "
            f"vocabulary size {vocab_size}. Received: top_k={top_k}"
        )
    utils.check_number("top_p", top_p, 0, 1, allow_none=True)


def check_beam_options(beam_width=4, length_penalty=0.6, coverage_penalty=0.0):
    """Raise a `ValueError` naming the first bad option of `beam_search`:
    `beam_width` an int `> 0`, the penalties numbers `>= 0`."""
    utils.check_positive_int("beam_width", beam_width)
    for name, value in (
        ("length_penalty", length_penalty),
        ("coverage_penalty", coverage_penalty),
    ):
        utils.check_number(name, value, 0, include_low=True)


def filter_logits(logits, top_k=None, top_p=None):
    """Keep the `top_k` largest logits and the top-p nucleus, mask the rest.

    Args:
        logits: float `(B, V)`.
        top_k: keep the `k` most likely tokens, or `None` for all.
        top_p: keep the smallest set of most likely tokens whose
            probability reaches `top_p` (nucleus sampling), or `None`.

    Returns:
        float32 `(B, V)`, masked entries set to a large negative number.
    """
    logits = ops.cast(logits, "float32")
    check_sampling_options(
        top_k=top_k, top_p=top_p, vocab_size=logits.shape[-1]
    )
    if top_k is not None:
        kth = ops.top_k(logits, k=int(top_k))[0][:, -1:]  # (B, 1)
        logits = ops.where(logits < kth, mask_value(), logits)
    if top_p is not None:
        ordered = ops.top_k(logits, k=ops.shape(logits)[-1])[0]  # descending
        probs = ops.softmax(ordered, axis=-1)
        before = ops.cumsum(probs, axis=-1) - probs  # mass of better tokens
        kept = ops.sum(ops.cast(before < top_p, "int32"), axis=-1)  # >= 1
        threshold = ops.take_along_axis(ordered, kept[:, None] - 1, axis=-1)
        logits = ops.where(logits < threshold, mask_value(), logits)
    return logits


def sample(
    step_fn,
    initial_state,
    start_ids,
    max_length,
    end_id=None,
    pad_id=0,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
    min_length=0,
    no_repeat_ngram_size=0,
    repetition_penalty=1.0,
    bad_token_ids=None,
):
    r"""Decode by sampling each token from the (filtered) distribution.

    $y_t \sim \operatorname{softmax}(\mathrm{logits}_t / \mathtt{temperature})$
    restricted to the `top_k` most likely tokens and to the top-p nucleus,
    with the logits under the `Controls` first (as HF: processors, then
    temperature, top-k and top-p).
    Sampling uses the Gumbel-max trick with stateless noise of
    `(seed, step, position)`, so a given seed always gives the same tokens,
    eagerly, compiled or exported.

    Args:
        step_fn: `(tokens (B,), state, index) -> (logits (B, V), state)`.
        initial_state: nest of tensors with batch first.
        start_ids: int `(B,)`.
        max_length: int, the number of tokens generated.
        end_id: id that ends a sequence, or `None`. Defaults to `None`.
        pad_id: id written after the end token. Defaults to `0`.
        temperature: divides the logits; `< 1` sharpens. Defaults to `1.0`.
        top_k: int or `None`. Defaults to `None`.
        top_p: float in $(0, 1]$ or `None`. Defaults to `None`.
        seed: int or int scalar tensor; `None` draws one. Defaults to
            `None`.
        min_length: no `end_id` among the first `min_length` tokens.
            Defaults to `0`.
        no_repeat_ngram_size: no n-gram of this size twice in a row's
            tokens; `0` for none. Defaults to `0`.
        repetition_penalty: CTRL's $\theta$: the logit of every token
            already generated is divided by it if positive, else
            multiplied. Defaults to `1.0`.
        bad_token_ids: list of ids never emitted, or `None`. Defaults to
            `None`.

    Returns:
        int32 tokens `(B, max_length)`.

    Examples:
        >>> import numpy as np
        >>> def step_fn(tokens, state, index):
        ...     return keras.ops.one_hot(tokens + 1, 6) * 50.0, state
        >>> np.asarray(sample(step_fn, (), np.array([1]), 4, end_id=4, seed=0))
        array([[2, 3, 4, 0]], dtype=int32)

    Reference:
        Holtzman et al., 2020, "The Curious Case of Neural Text
        Degeneration" (top-p); Fan et al., 2018 (top-k).
    """
    check_sampling_options(temperature, top_k, top_p)
    controls = Controls(
        min_length, no_repeat_ngram_size, repetition_penalty, bad_token_ids
    )
    seed = utils.draw_seed(seed)

    def choose(logits, index):
        logits = filter_logits(logits / temperature, top_k, top_p)
        noise = _uniform(seed, index, ops.shape(logits))
        gumbel = -ops.log(-ops.log(noise))  # argmax(l + g) ~ softmax(l)
        return utils.argmax(logits + gumbel)

    return _decode(
        choose,
        step_fn,
        initial_state,
        start_ids,
        max_length,
        end_id,
        pad_id,
        controls,
    )


def length_penalty_fn(lengths, alpha):
    r"""GNMT length penalty $((5 + \lvert Y \rvert) / 6)^\alpha$."""
    return ops.power((5.0 + ops.cast(lengths, "float32")) / 6.0, alpha)


def _coverage_of(coverage, batch, width):
    """GNMT `cp / β = Σ_s log(min(Σ_t α_ts, 1))` of each beam: `(B, W)`.

    Source positions with total weight exactly 0 (padding) are left out.
    """
    covered = ops.reshape(coverage, (batch, width, -1))  # (B, W, S)
    logs = ops.log(ops.clip(covered, 1e-10, 1.0))
    return ops.sum(ops.where(covered > 0, logs, 0.0), axis=-1)


def _candidates(logits, log_probs, finished, end_id, pad_id):
    """Every beam extended by every token: log-probs and which ones end.

    A finished beam only extends with `pad_id`, at no cost. Returns the
    candidates' total log-probabilities and end flags, both `(B, W, V)`.
    """
    batch, width = ops.shape(log_probs)
    vocab = ops.shape(logits)[-1]
    step_log_probs = ops.reshape(
        ops.log_softmax(logits, axis=-1), (batch, width, vocab)
    )
    pad_only = ops.where(ops.arange(vocab) == pad_id, 0.0, mask_value())
    step_log_probs = ops.where(
        ops.expand_dims(finished, -1), pad_only, step_log_probs
    )
    total = ops.expand_dims(log_probs, -1) + step_log_probs  # (B, W, V)
    ends = ops.expand_dims(finished, -1)  # candidate v of beam w ends
    if end_id is not None:  # when v is end_id or beam w ended
        ends = ops.logical_or(ends, ops.arange(vocab) == end_id)
    return total, ops.broadcast_to(ends, ops.shape(total))


def _gnmt_scores(log_probs, lengths, finished, coverage, alpha, beta):
    """GNMT `log P / lp + β · cp` of beams `(B, W)` or candidates `(B, W, V)`.

    The coverage penalty counts only for finished sequences.
    """
    scores = log_probs / length_penalty_fn(lengths, alpha)
    if not beta:
        return scores
    batch, width = ops.shape(log_probs)[:2]
    penalty = _coverage_of(coverage, batch, width)  # (B, W)
    if len(scores.shape) == 3:  # candidates
        penalty = ops.expand_dims(penalty, -1)
    return scores + beta * ops.where(finished, penalty, 0.0)


def _reorder(nest, parent, width):
    """The tiled `(B * W, ...)` tensors of `nest` following beam parents."""
    batch = ops.shape(parent)[0]
    rows = ops.reshape(parent + ops.arange(batch)[:, None] * width, (-1,))
    return keras.tree.map_structure(lambda x: ops.take(x, rows, axis=0), nest)


def _select(scores, width):
    """The `W` best candidates `(B, W * V)` -> flat index, parent, token."""
    vocab = ops.shape(scores)[-1]
    flat = ops.reshape(scores, (ops.shape(scores)[0], -1))
    _, best = ops.top_k(flat, k=width)  # (B, W), best first
    return best, best // vocab, ops.cast(best % vocab, "int32")


def _follow(x, parent):
    """Rows `(B, W, ...)` of `x` reordered to follow each beam's parent."""
    index = ops.reshape(parent, tuple(ops.shape(parent)) + (1,) * (x.ndim - 2))
    return ops.take_along_axis(x, index, axis=1)


def beam_search(
    step_fn,
    initial_state,
    start_ids,
    max_length,
    end_id=None,
    pad_id=0,
    beam_width=4,
    length_penalty=0.6,
    coverage_penalty=0.0,
    return_all_beams=False,
    min_length=0,
    no_repeat_ngram_size=0,
    repetition_penalty=1.0,
    bad_token_ids=None,
):
    r"""Decode keeping the `beam_width` best partial sequences.

    Each step expands every beam by every token and keeps the `W` best by
    the GNMT score (Wu et al. 2016):
    $s(Y) = \log P(Y \mid X) / \mathrm{lp}(Y) + \mathrm{cp}(X; Y)$,
    $\mathrm{lp}(Y) = ((5 + \lvert Y \rvert) / 6)^\alpha$ ($\lvert Y \rvert$
    counts the end token) and
    $\mathrm{cp} = \beta \sum_s \log(\min(\sum_t \alpha_{ts}, 1))$ over the
    source positions a finished sequence attended to (positions with total
    weight exactly 0, i.e. padding, are left out). A finished beam only
    extends with `pad_id` at no cost. The state is tiled over the beams here
    and reordered with them. $\log P$ is summed over the log-softmax of the
    logits under the `Controls` (each beam's own history), so `beam_width=1`
    is greedy search with the same controls.

    Args:
        step_fn: `(tokens (B,), state, index) -> (logits (B, V), state)`,
            or `-> (logits, state, alignments (B, S))` when
            `coverage_penalty > 0`. Called on `B * W` rows.
        initial_state: nest of tensors with batch first (not tiled).
        start_ids: int `(B,)`.
        max_length: int, the number of tokens generated.
        end_id: id that ends a sequence, or `None`. Defaults to `None`.
        pad_id: id written after the end token. Defaults to `0`.
        beam_width: number of beams `W`; `1` is greedy search. Defaults to
            `4`.
        length_penalty: $\alpha$; `0` ranks by plain log-probability. Defaults
            to `0.6`.
        coverage_penalty: $\beta$. Defaults to `0.0`.
        return_all_beams: whether to return every beam, best first.
            Defaults to `False`.
        min_length: no `end_id` among the first `min_length` tokens.
            Defaults to `0`.
        no_repeat_ngram_size: no n-gram of this size twice in a row's
            tokens; `0` for none. Defaults to `0`.
        repetition_penalty: CTRL's $\theta$: the logit of every token
            already generated is divided by it if positive, else
            multiplied. Defaults to `1.0`.
        bad_token_ids: list of ids never emitted, or `None`. Defaults to
            `None`.

    Returns:
        Tuple `(tokens, scores)`: int32 `(B, max_length)` and float32 `(B,)`
        for the best beam, or `(B, W, max_length)` and `(B, W)` with
        `return_all_beams`.

    Examples:
        >>> import numpy as np
        >>> def step_fn(tokens, state, index):  # id 6 wraps to 0
        ...     return keras.ops.one_hot((tokens + 1) % 6, 6) * 9.0, state
        >>> tokens, scores = beam_search(
        ...     step_fn, (), np.array([1]), 4, end_id=4, beam_width=2
        ... )
        >>> np.asarray(tokens)
        array([[2, 3, 4, 0]], dtype=int32)

    Reference:
        Wu et al., 2016, "Google's Neural Machine Translation System"
        (length and coverage penalties).
    """
    _check(max_length, end_id, pad_id)
    check_beam_options(beam_width, length_penalty, coverage_penalty)
    controls = Controls(
        min_length, no_repeat_ngram_size, repetition_penalty, bad_token_ids
    )
    width, use_coverage = int(beam_width), bool(coverage_penalty)
    start_ids = ops.cast(start_ids, "int32")
    batch = ops.shape(start_ids)[0]

    penalties = (length_penalty, coverage_penalty)

    def body(
        index, tokens, last, log_probs, finished, lengths, coverage, state
    ):
        logits, state, alignments = _call_step(step_fn, last, state, index)
        logits = controls.apply(logits, tokens, index, end_id)  # (B * W, V)
        if use_coverage:  # a finished beam attends no more
            live = ops.reshape(ops.logical_not(finished), (-1, 1))
            coverage += ops.where(live, ops.cast(alignments, "float32"), 0.0)
        total, ends = _candidates(logits, log_probs, finished, end_id, pad_id)
        lengths = lengths + ops.cast(ops.logical_not(finished), "int32")
        scores = _gnmt_scores(
            total, ops.expand_dims(lengths, -1), ends, coverage, *penalties
        )
        best, parent, chosen = _select(scores, width)
        flat_total = ops.reshape(total, (batch, -1))
        log_probs = ops.take_along_axis(flat_total, best, axis=1)
        finished = ops.take_along_axis(ops.reshape(ends, (batch, -1)), best, 1)
        tokens = _write(_follow(tokens, parent), index, chosen)
        state, coverage = _reorder((state, coverage), parent, width)
        last = ops.reshape(chosen, (-1,))
        lengths = _follow(lengths, parent)
        return (
            index + 1,
            tokens,
            last,
            log_probs,
            finished,
            lengths,
            coverage,
            state,
        )

    loop_vars = _beam_start(
        step_fn,
        initial_state,
        start_ids,
        max_length,
        pad_id,
        width,
        use_coverage,
    )
    _, tokens, _, log_probs, finished, lengths, coverage, _ = ops.while_loop(
        lambda index, *args: _running(index, max_length, args[3]),
        body,
        loop_vars,
    )
    scores = _gnmt_scores(log_probs, lengths, finished, coverage, *penalties)
    return _beam_results(tokens, scores, return_all_beams)


def _beam_start(step_fn, state, start_ids, max_length, pad_id, width, coverage):
    """The loop variables of `beam_search` at step 0, state tiled."""
    batch = ops.shape(start_ids)[0]
    # (B, ...) -> (B * W, ...), the beams of a row adjacent.
    state = keras.tree.map_structure(
        lambda x: ops.repeat(x, width, axis=0), state
    )
    last = ops.repeat(start_ids, width, axis=0)  # (B * W,)
    tokens = ops.full((batch, width, max_length), pad_id, "int32")
    # Only beam 0 is live at first, so the W beams do not start identical.
    first = ops.convert_to_tensor([[0.0] + [mask_value()] * (width - 1)])
    log_probs = ops.tile(first, (batch, 1))  # (B, W)
    finished = ops.zeros((batch, width), "bool")
    lengths = ops.zeros((batch, width), "int32")
    alignments = ops.zeros((batch * width, 1), "float32")  # unused
    if coverage:
        # Probe the alignment size with one step (traced, not looped).
        alignments = _call_step(step_fn, last, state, 0)[2]
        if alignments is None:
            raise ValueError(
                "`coverage_penalty` needs `step_fn` to return `(logits, "
                "state, alignments)`. Received: `(logits, state)`"
            )
    coverage = ops.zeros(ops.shape(alignments), "float32")  # (B * W, S)
    return 0, tokens, last, log_probs, finished, lengths, coverage, state


def _beam_results(tokens, scores, return_all_beams):
    """Beams sorted by final score (a penalty may reorder them)."""
    scores, order = ops.top_k(scores, k=ops.shape(scores)[1])
    tokens = ops.take_along_axis(tokens, order[:, :, None], axis=1)
    if return_all_beams:
        return tokens, scores
    return tokens[:, 0], scores[:, 0]
