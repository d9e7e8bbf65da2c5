r"""Linear attention: a kernel feature map instead of the softmax.

With a feature map $\phi$ the attention weights are
$\phi(q_i)^\top \phi(k_j)$ normalised over the keys query $i$ sees, so the
sums over keys factor out of the queries:

$$
o_i = \frac{\phi(q_i)^\top \sum_j \phi(k_j) v_j^\top}
           {\phi(q_i)^\top \sum_j \phi(k_j) + \varepsilon},
$$

O(T) time and memory instead of O(T²) (Katharopoulos et al. 2020). The
module has three parts:

- `feature_map_of`: $\phi$ (`"elu"`, `"relu"`, or FAVOR+'s positive random
  features, `favor_exponents` of `orthogonal_random_features`, Choromanski
  et al. 2021);
- `causal_product`: $\sum_{j \le i} (a_i \cdot b_j)\, c_j$ over blocks of
  `CHUNK_SIZE` positions, carrying the state $\sum_j b_j c_j^\top$
  (quadratic only inside a block), with its own blockwise gradient: O(T)
  memory forward and backward;
- `LinearAttention`: `MultiHeadAttention`'s projections around them, with a
  recurrent decoding state of fixed size.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_attention import ops as attention_ops
from keras_attention import utils
from keras_attention.layers import cache as caches
from keras_attention.layers.multi_head import MultiHeadAttention

FEATURE_MAPS = ("elu", "relu", "favor")

# Positions per block of the causal loop: a block's (C, C) products cost
# about as much as its (C, D) x (D, Dv) state products for heads of 64.
CHUNK_SIZE = 64

# The exponent of "no key yet" in FAVOR+'s key shift: exp(-1e30) is 0.
_LOWEST = -1e30

# MultiHeadAttention's options that have no meaning without softmax scores
# (`None` means the default too: blocks drop unset options).
_FIXED = {
    "score": "scaled_dot",
    "dropout": 0.0,
    "chunk_size": None,
    "score_mod": None,
    "mask_mod": None,
    "sliding_window": None,
    "use_sinks": False,
    "qk_norm": None,
    "attention_axes": None,
    "sequence_parallel": None,
}


def orthogonal_random_features(key_dim, num_features, seed):
    r"""FAVOR+'s projection $\omega$, `(key_dim, num_features)` float32.

    Its columns are rows of stacked `key_dim × key_dim` orthogonal blocks
    (QR of Gaussian matrices) scaled by chi-distributed norms (the norms of
    Gaussian vectors), so each column is marginally Gaussian and the columns
    of one block are orthogonal. Drawn with NumPy: the same numbers on every
    backend.

    Args:
        key_dim: size `D` of a query/key head.
        num_features: number of random features `m`.
        seed: int seed of `numpy.random.default_rng`.

    Returns:
        NumPy array `(D, m)`.
    """
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(-(-num_features // key_dim)):
        gaussian = rng.standard_normal((key_dim, key_dim))
        blocks.append(np.linalg.qr(gaussian)[0].T)  # orthonormal rows
    directions = np.concatenate(blocks)[:num_features]  # (m, D)
    norms = np.linalg.norm(rng.standard_normal((num_features, key_dim)), axis=1)
    return (directions * norms[:, None]).T.astype("float32")


def favor_exponents(x, random_features):
    r"""$\log \phi(x)$ of FAVOR+: $\omega^\top x' - \lvert x' \rvert^2 / 2
    - \log \sqrt{m}$ with $x' = x D^{-1/4}$, float32 `(..., T, m)`.

    $\phi(x) = \exp(\omega^\top x' - \lvert x' \rvert^2 / 2) / \sqrt{m}$
    gives $\mathbb{E}[\phi(q)^\top \phi(k)] = \exp(q^\top k / \sqrt{D})$,
    the softmax kernel (Choromanski et al. 2021, positive random features).

    Args:
        x: `(..., T, D)`.
        random_features: $\omega$ `(D, m)`.
    """
    omega = ops.cast(random_features, "float32")  # (D, m)
    dim, count = omega.shape
    x = ops.cast(x, "float32") * dim**-0.25
    squared = 0.5 * ops.sum(ops.square(x), axis=-1, keepdims=True)
    return ops.matmul(x, omega) - squared - 0.5 * math.log(count)


def feature_map_of(x, feature_map, random_features=None):
    r"""$\phi(x)$ in float32, `(..., T, D)` -> `(..., T, F)`.

    `"elu"`: $\operatorname{elu}(x) + 1$; `"relu"`: $\operatorname{relu}(x)$;
    `"favor"`: $\exp$ of `favor_exponents` (as defined: the layer shifts
    the exponents first, so that nothing overflows).

    Args:
        x: `(..., T, D)`.
        feature_map: one of `FEATURE_MAPS`.
        random_features: $\omega$ `(D, m)` for `"favor"`.
    """
    x = ops.cast(x, "float32")
    if feature_map == "elu":
        return ops.elu(x) + 1.0
    if feature_map == "relu":
        return ops.relu(x)
    return ops.exp(favor_exponents(x, random_features))


def _causal_loop(a, b, c, chunk_size):
    r"""$o_i = \sum_{j \le i} (a_i \cdot b_j)\, c_j$ block by block.

    `a`, `b` `(..., T, F)` and `c` `(..., T, E)` (same leading dims) ->
    `(..., T, E)`. A loop over blocks of `chunk_size` positions carries
    $S = \sum_j b_j c_j^\top$ `(..., F, E)` of the earlier blocks; inside a
    block the causal part is a masked `(C, C)` product. Blocks are slices
    of the inputs and of one output buffer `(..., T, E)`: no reordered copy
    of the sequence.
    """
    length = ops.shape(a)[-2]
    if isinstance(length, int) and length <= chunk_size:  # one block
        causal = ops.tril(ops.ones((length, length), "float32"))
        scores = ops.matmul(a, ops.swapaxes(b, -1, -2)) * causal
        return ops.matmul(scores, c)
    num_chunks = (length + chunk_size - 1) // chunk_size
    padded = num_chunks * chunk_size
    a, b, c = (_align(x, padded) for x in (a, b, c))
    causal = ops.tril(ops.ones((chunk_size, chunk_size), "float32"))
    lead, width = tuple(ops.shape(a)[:-2]), c.shape[-1]

    def step(index, carry):
        state, outputs = carry
        start = [0] * len(lead) + [index * chunk_size, 0]
        a_i, b_i, c_i = (
            ops.slice(x, start, lead + (chunk_size, x.shape[-1]))
            for x in (a, b, c)
        )  # (..., C, F or E)
        b_t = ops.swapaxes(b_i, -1, -2)  # (..., F, C)
        inside = ops.matmul(ops.matmul(a_i, b_t) * causal, c_i)
        outputs = ops.slice_update(
            outputs, start, ops.matmul(a_i, state) + inside
        )
        return state + ops.matmul(b_t, c_i), outputs

    init = (
        ops.zeros(lead + (a.shape[-1], width), "float32"),
        ops.zeros(lead + (padded, width), "float32"),
    )
    _, outputs = utils.fori_loop(num_chunks, step, init)
    return _align(outputs, length)


def causal_product(a, b, c, chunk_size=None):
    r"""$o_i = \sum_{j \le i} (a_i \cdot b_j)\, c_j$ in O(T) memory.

    The causal sum of linear attention without a `(T, T)` tensor, nor a
    `(T, F, E)` cumulative sum: blocks of `chunk_size` positions, each
    quadratic inside and linear across (`_causal_loop`). The gradient is
    three more such loops (two over reversed time, Katharopoulos et al.'s
    backward pass): $\partial a_i = \sum_{j \le i} (g_i \cdot c_j) b_j$,
    $\partial b_j = \sum_{i \ge j} (c_j \cdot g_i) a_i$,
    $\partial c_j = \sum_{i \ge j} (b_j \cdot a_i) g_i$, so training keeps
    O(T) memory too.

    Args:
        a: float32 `(..., T, F)`, e.g. the queries' features.
        b: float32 `(..., T, F)`, e.g. the keys' features.
        c: float32 `(..., T, E)`, e.g. the values.
        chunk_size: positions per block. Defaults to `CHUNK_SIZE` (at most
            `T`).

    Returns:
        float32 `(..., T, E)`.
    """
    length = a.shape[-2]
    if chunk_size is None:
        chunk_size = CHUNK_SIZE if length is None else min(CHUNK_SIZE, length)
    chunk_size = max(chunk_size, 1)

    def flip(x):
        return ops.flip(x, axis=-2)

    @ops.custom_gradient
    def product(a, b, c):
        # Nothing inside is recorded for autodiff (TensorFlow's eager tape
        # would keep every block alive): the gradient is `grad`'s.
        a, b, c = (
            ops.stop_gradient(ops.convert_to_tensor(x)) for x in (a, b, c)
        )

        def grad(*args, upstream=None):
            # TensorFlow and JAX pass the upstream gradient alone, PyTorch
            # the inputs and `upstream=`.
            g = args[0] if upstream is None else upstream
            d_a = _causal_loop(g, c, b, chunk_size)
            d_b = _causal_loop(flip(c), flip(g), flip(a), chunk_size)
            d_c = _causal_loop(flip(b), flip(a), flip(g), chunk_size)
            return d_a, flip(d_b), flip(d_c)

        return _causal_loop(a, b, c, chunk_size), grad

    return product(a, b, c)


def _align(x, length):
    """`x` `(..., T, E)` cut or zero-padded to `length` positions (e.g. the
    causal mask's keys `j <= i` for queries `0 .. length - 1`); `x` itself
    when it has that length."""
    if x.shape[-2] is not None and x.shape[-2] == length:
        return x
    x = x[..., :length, :]
    pad = length - ops.shape(x)[-2]
    return ops.pad(x, [[0, 0]] * (len(x.shape) - 2) + [[0, pad], [0, 0]])


@keras.saving.register_keras_serializable(package="keras_attention")
class LinearAttention(MultiHeadAttention):
    r"""Linear attention: kernel features instead of the softmax, O(T).

    Per head, over the keys $j$ query $i$ may see (padding and causal
    masks):

    $$
    o_i = \frac{\sum_j \phi(q_i)^\top \phi(k_j)\, v_j}
               {\sum_j \phi(q_i)^\top \phi(k_j) + \varepsilon},
    $$

    computed as $\phi(q_i)^\top S / (\phi(q_i)^\top z + \varepsilon)$ with
    $S = \sum_j \phi(k_j) v_j^\top$, $z = \sum_j \phi(k_j)$: O(T) time and
    memory, never a `(Tq, Tk)` tensor. Feature maps $\phi$:

    - `"elu"`: $\operatorname{elu}(x) + 1$ (Katharopoulos et al. 2020);
    - `"relu"`: $\operatorname{relu}(x)$ (a query that meets only zero
      features gets a zero output);
    - `"favor"`: FAVOR+ positive orthogonal random features,
      $\phi(x) = \exp(\omega^\top x' - \lvert x' \rvert^2 / 2) / \sqrt{m}$,
      $x' = x D^{-1/4}$, an unbiased estimate of the softmax kernel
      $\exp(q^\top k / \sqrt{D})$ (Choromanski et al. 2021). $\omega$ is
      the non-trainable weight `random_features` `(D, m)`, drawn in `build`
      with NumPy from `seed` (see `orthogonal_random_features`), saved with
      the model, and redrawn by `redraw_features(seed)`.

    Numerics: $\phi$, the sums and the state are float32 under every dtype
    policy (the layer does not autocast its call arguments, so a float32
    state passed as `cache` stays float32; the inputs are cast to the
    compute dtype before the projections). FAVOR+'s exponents are shifted
    down by their maximum before `exp` (no gradient through the shift): a
    query's over its own features, the keys' over all the visible keys and
    features of a head (a decoding state keeps its shift, and rescales
    itself when a new key's exponent is larger). Every exponent is then
    $\le 0$, so nothing overflows, and the shifts cancel exactly:
    $\varepsilon$ is applied as $\varepsilon\, e^{-(s_q + s_k)}$. (A
    data-independent key shift, the bound
    $\max_i \lvert \omega_i \rvert^2 / 2$ of every exponent, would
    underflow every typical key to 0 in float32 from `key_dim` 128 on.)
    In a causal pass the keys' shift is the whole sequence's: should early
    keys' exponents lie ~87 below a later key's, their features underflow
    and those early queries get a zero output.

    The causal pass (`use_causal_mask=True`) loops over blocks of
    `CHUNK_SIZE` (64) positions carrying $(S, z)$, quadratic only inside a
    block, with a blockwise gradient (`causal_product`). Decoding follows
    the package's one contract with a recurrent state of fixed size:
    `initial_cache(batch_size, max_length)` gives float32 zeros
    `(B, H_kv, F, Dv + 1)` ($S$ with $z$ as its last column; `F` is
    `key_dim`), or `(B, H_kv, m, Dv + 2)` for FAVOR+ (one more column
    holds the keys' shift), which does not grow with the length.

    The projections are keras's (sublayers `query`, `key`, `value`,
    `attention_output`), so `layer.set_weights(keras_mha.get_weights())`
    works (FAVOR+'s `random_features` comes first). Grouped-query attention
    (`num_key_value_heads`) and rotary embedding of queries and keys
    before $\phi$ (`rotary_max_wavelength`) are supported.

    Args:
        num_heads: number of query heads `H`.
        key_dim: size `D` of each query/key head.
        value_dim: size `Dv` of each value head. Defaults to `key_dim`.
        feature_map: `"elu"`, `"relu"` or `"favor"`. Defaults to `"elu"`.
        num_random_features: number `m` of FAVOR+ features (only with
            `"favor"`). Defaults to `4 · key_dim`.
        epsilon: $\varepsilon$ of the denominator, positive. Defaults to
            `1e-6`.
        use_bias: whether the projections have biases. Defaults to `True`.
        seed: int seed of the random features; `None` draws one. Defaults
            to `None`.
        **kwargs: other `MultiHeadAttention` arguments (`output_shape`,
            `num_key_value_heads`, `rotary_max_wavelength`, `use_gate`,
            initializers, `name`, `dtype`). Those that need softmax scores
            (`score`, `dropout` > 0, `chunk_size`, `score_mod`, `mask_mod`,
            `sliding_window`, `use_sinks`, `qk_norm`, `attention_axes`) are
            a `ValueError`, as are inputs of rank other than 3.

    Call arguments:
        query: `(B, Tq, dq)`.
        value: `(B, Tk, dv)`.
        key: optional `(B, Tk, dk)`; `value` is used when omitted.
        query_mask, value_mask, key_mask: optional bool `(B, Tq)`,
            `(B, Tk)`, `(B, Tk)`; filled from Keras masks. With a cache,
            the value/key masks describe the new keys.
        return_attention_scores: whether to also return the implied weights
            $\phi(q_i)^\top \phi(k_j) / (\sum_{j'} \ldots + \varepsilon)$
            (O(T²); not with a cache).
        use_causal_mask: whether query $i$ only sees keys $j \le i$.
        cache: optional float32 state `(B, H_kv, F, Dv + 1)` (FAVOR+:
            `(B, H_kv, m, Dv + 2)`), e.g. from `initial_cache`.
        cache_update_index: int or scalar tensor, the position of the first
            query (required with a cache; it offsets rotary positions).
        training: unused (no dropout).
        attention_mask, attention_bias: refused (a `ValueError`): the layer
            never forms the `(Tq, Tk)` logits they would act on.

    Returns:
        The output `(B, Tq, dq)` (or `output_shape`), then the weights
        `(B, H, Tq, Tk)` if `return_attention_scores`, then the new state if
        `cache` was passed.

    Example:
        >>> import numpy as np
        >>> layer = LinearAttention(num_heads=2, key_dim=4,
        ...                         feature_map="favor", seed=0)
        >>> x = np.ones((1, 6, 8), "float32")
        >>> tuple(layer(x, x, use_causal_mask=True).shape)
        (1, 6, 8)
        >>> cache = layer.initial_cache(batch_size=1, max_length=6)
        >>> tuple(cache.shape)  # (B, H_kv, m, Dv + 2): no time axis
        (1, 2, 16, 6)
        >>> output, cache = layer(x[:, :2], x[:, :2], use_causal_mask=True,
        ...                       cache=cache, cache_update_index=0)
        >>> tuple(output.shape), tuple(cache.shape)
        ((1, 2, 8), (1, 2, 16, 6))

    Reference:
        Katharopoulos et al., 2020, "Transformers are RNNs: Fast
        Autoregressive Transformers with Linear Attention"; Choromanski et
        al., 2021, "Rethinking Attention with Performers".
    """

    scores_with_cache = False

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        feature_map="elu",
        num_random_features=None,
        epsilon=1e-6,
        use_bias=True,
        seed=None,
        **kwargs,
    ):
        utils.check_choice("feature_map", feature_map, FEATURE_MAPS)
        utils.check_positive_int("key_dim", key_dim)
        utils.check_positive_int(
            "num_random_features", num_random_features, allow_none=True
        )
        if num_random_features is not None and feature_map != "favor":
            raise ValueError(
                "`num_random_features` needs `feature_map='favor'`. Received: "
                f"num_random_features={num_random_features}, "
                f"feature_map={feature_map!r}"
            )
        utils.check_positive_number("epsilon", epsilon)
        if seed is not None:
            utils.draw_seed(seed)  # an int32, or a ValueError naming it
        for name, default in _FIXED.items():
            value = kwargs.pop(name, None)
            if value is not None and value != default:
                raise ValueError(
                    f"`LinearAttention` takes no `{name}`: its weights are "
                    "feature products, not a softmax of scores, and its "
                    f"causal pass is always O(T). Received: {name}={value!r}"
                )
        # Keras would cast a float32 state passed as `cache` to float16
        # under mixed precision; the inputs are cast by `call` anyway.
        kwargs.setdefault("autocast", False)
        super().__init__(
            num_heads, key_dim, value_dim=value_dim, use_bias=use_bias,
            seed=seed, **kwargs,
        )  # fmt: skip
        self.feature_map = feature_map
        self.num_random_features = None
        if feature_map == "favor":
            self.num_random_features = num_random_features or 4 * key_dim
        self.epsilon = epsilon

    @property
    def num_features(self):
        """The size `F` of $\\phi$: `num_random_features` or `key_dim`."""
        return self.num_random_features or self._key_dim

    def build(self, query_shape, value_shape, key_shape=None):
        if len(query_shape) != 3:
            raise ValueError(
                "`LinearAttention` needs inputs of rank 3 (B, T, d). "
                f"Received: query.shape={tuple(query_shape)}"
            )
        super().build(query_shape, value_shape, key_shape)

    def _build_extras(self):
        """FAVOR+'s `random_features` `(D, m)`: float32, not trained."""
        if self.feature_map != "favor":
            return
        values = self._draw(self.seed)
        self.random_features = self.add_weight(
            name="random_features",
            shape=values.shape,
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(
                values, "float32"
            ),
            trainable=False,
            dtype="float32",
            autocast=False,
        )

    def _draw(self, seed):
        return orthogonal_random_features(
            self._key_dim, self.num_random_features, utils.draw_seed(seed)
        )

    def redraw_features(self, seed=None):
        """Draw new FAVOR+ features from `seed` and assign them.

        Args:
            seed: int seed; `None` draws one. The same seed gives the same
                features as a layer built with it.
        """
        if self.feature_map != "favor" or not self.built:
            raise ValueError(
                "`redraw_features` needs a built layer with "
                "`feature_map='favor'`. Received: "
                f"feature_map={self.feature_map!r}, built={self.built}"
            )
        self.random_features.assign(self._draw(seed))

    # === Decoding: a recurrent state of fixed size ===

    def _state_shape(self, batch_size):
        width = self._value_dim + (2 if self.feature_map == "favor" else 1)
        heads = self.num_key_value_heads
        return (batch_size, heads, self.num_features, width)

    def initial_cache(self, batch_size, max_length):
        """An empty decoding state, for the decoding contract.

        Args:
            batch_size: int (or scalar int tensor) `B`.
            max_length: int `T_max`; only checked: the state does not grow.

        Returns:
            float32 zeros `(B, H_kv, F, Dv + 1)`: $\\sum_j \\phi(k_j)
            v_j^\\top$ with $\\sum_j \\phi(k_j)$ as the last column
            (FAVOR+: `(B, H_kv, m, Dv + 2)`, then the keys' shift).
        """
        caches.check_batch_and_length(batch_size, max_length)
        return ops.zeros(self._state_shape(batch_size), "float32")

    def compute_cache(self, value, key=None):
        raise ValueError(
            "`LinearAttention` keeps a recurrent state, not keys and values "
            "to attend to again: pass `cache=layer.initial_cache(...)` with "
            "a `cache_update_index`. Received: a call to `compute_cache`"
        )

    def _cache_spec(self, batch_size):
        return self._state_shape(batch_size), None  # no time axis

    def _write_cache(self, cache, key, value, index):
        return key, value, cache  # `_attend` adds them to the state

    # === Call ===

    def _check_call(self, query, value, key, cache, index, masks):
        if masks.get("attention_mask") is not None:
            raise ValueError(
                "`LinearAttention` takes no `attention_mask` (it never forms "
                "the (Tq, Tk) weights): use `query_mask`, `value_mask` and "
                "`use_causal_mask`. Received: attention_mask.shape="
                f"{tuple(masks['attention_mask'].shape)}"
            )
        if cache is not None and index is None:
            raise ValueError(
                "`LinearAttention`'s cache is a recurrent state: it needs a "
                "`cache_update_index`. Received: cache_update_index=None"
            )
        super()._check_call(query, value, key, cache, index, masks)

    def _attend(self, query, key, value, cache, **options):
        """Linear attention of the heads `(B, *heads, T, D)`; the state in
        `cache` is read, extended with the new keys and returned.

        Returns:
            `(output (B, *heads, Tq, Dv), weights or None, cache)`.
        """
        self._check_options(options, cache)
        key_mask = options["key_mask"]
        state, log_scale = self._read_state(cache, key)
        phi_q, shift_q = self._features(query, True)
        phi_k, shift_k = self._features(key, False, key_mask, log_scale)
        if log_scale is not None:  # the state in units of the new shift
            state = state * ops.exp(log_scale - shift_k)
        # Values with a column of ones: the last output column is the
        # denominator. Masked keys add nothing (NaN-safe: `where`).
        ones = ops.ones_like(value[..., :1], "float32")
        extended = ops.concatenate([ops.cast(value, "float32"), ones], -1)
        phi_k = attention_ops.hide_unseen(phi_k, key_mask, -2)
        extended = attention_ops.hide_unseen(extended, key_mask, -2)
        causal, weights = options["use_causal_mask"], None
        if options["return_weights"]:
            product, weights = self._implied_weights(
                phi_q, phi_k, extended, causal, options
            )
        else:
            product, total = self._linear(phi_q, phi_k, extended, causal, state)
        if cache is not None:
            cache = self._write_state(cache, total, shift_k)
        epsilon = self.epsilon  # eps · e^-(shifts): the shifts cancel
        if shift_q is not None:
            exponent = ops.clip(-(shift_q + shift_k), -80.0, 80.0)
            epsilon = self.epsilon * ops.exp(exponent)  # (B, *heads, Tq, 1)
        denominator = product[..., -1:] + epsilon
        output = product[..., :-1] / denominator
        output = attention_ops.hide_unseen(output, options["query_mask"], -2)
        if weights is not None:
            weights = weights / denominator
        return ops.cast(output, value.dtype), weights, cache

    def _check_options(self, options, cache):
        if options["attention_bias"] is not None:
            raise ValueError(
                "`LinearAttention` takes no `attention_bias` (there are no "
                "logits to add it to). Received: an `attention_bias`"
            )
        if options["return_weights"] and cache is not None:
            raise ValueError(
                "`return_attention_scores` needs the keys, which a "
                "recurrent state does not keep. Received: "
                "return_attention_scores=True with a cache"
            )

    def _features(self, x, is_query, key_mask=None, floor=None):
        """`(features, shift)` in float32, $\\phi(x) = $ features
        $\\cdot e^{\\mathrm{shift}}$ (`shift` `None` but for FAVOR+).

        FAVOR+'s exponents are shifted by their maximum (no gradient): a
        query's over its features `(..., Tq, 1)`, the keys' over the visible
        keys and features of a head `(B, *heads', 1, 1)`, at least `floor`
        (the shift of a decoding state).
        """
        if self.feature_map != "favor":
            return feature_map_of(x, self.feature_map), None
        exponents = favor_exponents(x, self.random_features)
        if is_query:
            shift = ops.max(exponents, axis=-1, keepdims=True)
        else:
            if key_mask is not None:  # (B, Tk) -> (B, 1, ..., Tk, 1)
                seen = ops.cast(key_mask, "bool")[..., None]
                for _ in range(len(x.shape) - 3):
                    seen = ops.expand_dims(seen, 1)
                exponents = ops.where(seen, exponents, _LOWEST)
            shift = ops.max(exponents, axis=(-2, -1), keepdims=True)
            if floor is not None:
                shift = ops.maximum(shift, floor)
        shift = ops.stop_gradient(shift)
        return ops.exp(exponents - shift), shift

    def _read_state(self, cache, key):
        """`(state (B, *heads', F, Dv + 1), FAVOR+'s shift (B, *heads', 1, 1)
        or None)` of `cache`, in the heads layout of `key`; `(None, None)`
        without a cache. An empty state's shift is `_LOWEST`."""
        if cache is None:
            return None, None
        cache = ops.cast(cache, "float32")
        shape = tuple(ops.shape(key)[:-2]) + (self.num_features,)
        width = self._value_dim + 1
        state = ops.reshape(cache[..., :width], shape + (width,))
        if self.feature_map != "favor":
            return state, None
        log_scale = ops.reshape(cache[..., :1, width:], shape[:-1] + (1, 1))
        total = ops.sum(state[..., -1:], axis=-2, keepdims=True)  # Σ φ(k)
        return state, ops.where(total > 0, log_scale, _LOWEST)

    def _write_state(self, cache, state, shift):
        """`state` (and FAVOR+'s `shift` as one more column) in the
        layout of `cache`, float32 (sums over the whole sequence would
        overflow float16)."""
        if shift is not None:
            shape = tuple(ops.shape(state)[:-1]) + (1,)
            state = ops.concatenate([state, ops.broadcast_to(shift, shape)], -1)
        return ops.reshape(state, ops.shape(cache))

    def _linear(self, phi_q, phi_k, extended, causal, state):
        """`(Σ_j φ(q_i)·φ(k_j) [v_j, 1] (B, *heads, Tq, Dv + 1), the new
        state or None)`: over the keys each query sees, plus `state`."""
        if causal:
            length = ops.shape(phi_q)[-2]
            lead = tuple(ops.shape(phi_q)[:-2])
            keys, values = (_align(x, length) for x in (phi_k, extended))
            if keys.shape[:-2] != phi_q.shape[:-2]:  # grouped-query heads
                keys, values = (
                    ops.broadcast_to(x, lead + tuple(ops.shape(x)[-2:]))
                    for x in (keys, values)
                )  # the query heads' layout: (B, *heads, Tq, F or E)
            product = causal_product(phi_q, keys, values)
            if state is None:
                return product, None
            product = product + ops.matmul(phi_q, state)
        total = ops.matmul(ops.swapaxes(phi_k, -1, -2), extended)
        total = total if state is None else state + total  # (..., F, E)
        if not causal:
            product = ops.matmul(phi_q, total)
        return product, total

    def _implied_weights(self, phi_q, phi_k, extended, causal, options):
        """The implied weights' path, O(Tq · Tk): `(products, weights
        (B, *heads, Tq, Tk) before normalising)`."""
        products = ops.matmul(phi_q, ops.swapaxes(phi_k, -1, -2))
        mask = attention_ops.build_mask(
            ops.shape(phi_q)[-2], ops.shape(phi_k)[-2],
            options["query_mask"], options["key_mask"], None, causal,
            rank=len(products.shape), heads=options["heads"],
        )  # fmt: skip
        if mask is not None:
            products = ops.where(mask, products, 0.0)
        return ops.matmul(products, extended), products

    def get_config(self):
        config = super().get_config()
        for name in _FIXED:
            config.pop(name)
        config.update(
            feature_map=self.feature_map,
            num_random_features=self.num_random_features,
            epsilon=self.epsilon,
        )
        return config
