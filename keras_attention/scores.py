"""Scoring functions: how relevant is key $k$ to query $q$?

Every score is a `keras.layers.Layer` with `call(query, key) -> scores`, where
`query` is `(..., Tq, dq)`, `key` is `(..., Tk, dk)` and `scores` is
`(..., Tq, Tk)`, unnormalised (step 1 of the attention recipe; the softmax and
the weighted sum are in `keras_attention.ops`). Any leading batch or head
dimensions are allowed.

`get(identifier)` turns a name, a config dict or an instance into a score
layer. Names and aliases:

| class | names |
|---|---|
| `Dot` | "dot" |
| `ScaledDot` | "scaled_dot" |
| `General` | "general", "bilinear", "luong" |
| `Additive` | "additive", "concat", "mlp", "bahdanau" |
| `Cosine` | "cosine" |
| `Distance` | "distance", "inverse_distance", "gaussian" |
| `Location` | "location" |
"""

import math

import keras
from keras import ops

from keras_attention import utils

register = keras.saving.register_keras_serializable(package="keras_attention")


def _transpose_last(x):
    return ops.swapaxes(x, -1, -2)


def _float32_if_half(x):
    """`x` in float32 if it is float16 (else as it is)."""
    if keras.backend.standardize_dtype(x.dtype) == "float16":
        return ops.cast(x, "float32")
    return x


def dot_logits(query, key):
    r"""$q k^\top$ of `(..., Tq, D)` and `(..., Tk, D)`: logits `(..., Tq, Tk)`.

    Computed in float32 when the inputs are float16: a dot product of
    unnormalised features (e.g. values up to 255 over 16 dims) exceeds
    float16's 65504 before any softmax could save it. Leading dims
    broadcast; $k^\top$ is never materialised.
    """
    dtypes = {keras.backend.standardize_dtype(x.dtype) for x in (query, key)}
    if "float16" in dtypes:
        query, key = ops.cast(query, "float32"), ops.cast(key, "float32")
    return ops.matmul(query, _transpose_last(key))


class Score(keras.layers.Layer):
    r"""Base class of the scoring layers: shape checks and `call` contract.

    Subclasses implement `call(query, key)` and set `same_dim = True` when
    the score needs `dq == dk`. A score that is a scaled dot product
    $c \cdot q^\top k$ says so through `dot_product_scale`, so that
    attention layers can scale the queries (O(T·D) instead of O(T²)) and use
    their dot-product paths (fused kernels, the chunked gradient).
    """

    same_dim = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Accept masked inputs quietly; the parent layer applies the masks.
        self.supports_masking = True

    def compute_mask(self, query, key=None, mask=None):
        return None

    def __call__(self, query, key, **kwargs):
        # Every call, not only the first (which builds the weights).
        self._check_shapes(query.shape, key.shape)
        dims = (query.shape[-1], key.shape[-1])
        built_dims = getattr(self, "_built_dims", None)
        if self.weights and built_dims and None not in dims + built_dims:
            if dims != built_dims:
                raise ValueError(
                    f"`{self.name}` was built for query and key sizes "
                    f"{built_dims}. Received: query.shape="
                    f"{tuple(query.shape)}, key.shape={tuple(key.shape)}"
                )
        outputs = super().__call__(query, key, **kwargs)
        self._built_dims = built_dims or dims
        return outputs

    def project_key(self, key):
        """The part of the score that needs only the key, `(..., Tk, dk) ->
        (..., Tk, d')`: computed once per key sequence (an RNN decoder's
        memory) and passed to `score_projected` for every query. The key
        itself here; `General` and `Additive` project it."""
        return key

    def score_projected(self, query, projected_key):
        """Scores `(..., Tq, Tk)` of raw queries against `project_key(key)`:
        the same numbers as `call(query, key)`."""
        return self.call(query, projected_key)

    def dot_product_scale(self, dim):
        r"""$c$ if this score is $c \cdot q^\top k$ for queries of size `dim`,
        or `None`.

        A subclass that changes `call` of `Dot` or `ScaledDot` must return
        `None` here, or attention layers will compute the plain product.
        """
        return None

    def build(self, query_shape, key_shape=None):
        key_shape = query_shape if key_shape is None else key_shape
        self._check_shapes(query_shape, key_shape)
        self.built = True

    def _check_shapes(self, query_shape, key_shape):
        if len(query_shape) < 2 or len(query_shape) != len(key_shape):
            raise ValueError(
                f"`{self.name}` expects `query` (..., Tq, dq) and `key` "
                "(..., Tk, dk) of the same rank >= 2. "
                f"Received: query.shape={tuple(query_shape)}, "
                f"key.shape={tuple(key_shape)}"
            )
        dq, dk = query_shape[-1], key_shape[-1]
        if self.same_dim and None not in (dq, dk) and dq != dk:
            raise ValueError(
                f"`{type(self).__name__}` score needs `query` and `key` to "
                "have the same last dimension (use `General` or `Additive` "
                f"otherwise). Received: query.shape={tuple(query_shape)}, "
                f"key.shape={tuple(key_shape)}"
            )

    def compute_output_shape(self, query_shape, key_shape=None):
        key_shape = query_shape if key_shape is None else key_shape
        return tuple(query_shape[:-1]) + (key_shape[-2],)

    def get_config(self):
        # Written out (not Keras's automatic config): a score may be built
        # with its parent's `DTypePolicy` object.
        return super().get_config()


@register
class Dot(Score):
    r"""Dot-product score: $\operatorname{score}(q, k) = q^\top k$.

    Needs `dq == dk`. Forces queries and keys into the same space.

    Call arguments:
        query: `(..., Tq, D)`.
        key: `(..., Tk, D)`.

    Returns:
        Scores `(..., Tq, Tk)`.

    Examples:
        >>> import numpy as np
        >>> tuple(Dot()(np.ones((1, 2, 3)), np.ones((1, 4, 3))).shape)
        (1, 2, 4)

    Reference:
        Luong et al., 2015, "Effective Approaches to Attention-based Neural
        Machine Translation".
    """

    same_dim = True

    def dot_product_scale(self, dim):
        return 1.0

    def call(self, query, key):
        return dot_logits(query, key)  # (..., Tq, Tk)


@register
class ScaledDot(Score):
    r"""Scaled dot-product score:
    $\operatorname{score}(q, k) = q^\top k \cdot \mathtt{scale}$.

    The scale defaults to $1/\sqrt{D}$, which keeps the variance of the scores
    independent of the dimension (Vaswani et al.).

    Args:
        scale: float multiplier, or `None` for $1/\sqrt{D}$. Defaults to `None`.

    Call arguments:
        query: `(..., Tq, D)`.
        key: `(..., Tk, D)`.

    Returns:
        Scores `(..., Tq, Tk)`.

    Examples:
        >>> import numpy as np
        >>> ScaledDot()(np.ones((1, 2, 4)), np.ones((1, 3, 4)))[0, 0, 0]
        ... # doctest: +SKIP
        2.0

    Reference:
        Vaswani et al., 2017, "Attention Is All You Need".
    """

    same_dim = True

    def __init__(self, scale=None, **kwargs):
        super().__init__(**kwargs)
        utils.check_positive_number("scale", scale, allow_none=True)
        self.scale = scale

    def dot_product_scale(self, dim):
        return 1.0 / math.sqrt(dim) if self.scale is None else self.scale

    def call(self, query, key):
        query = ops.convert_to_tensor(query)  # also via `score_projected`
        scale = self.dot_product_scale(query.shape[-1])
        query = query * ops.cast(scale, query.dtype)  # O(T·D), not O(T²)
        return dot_logits(query, key)  # (..., Tq, Tk)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@register
class General(Score):
    r"""Bilinear ("general") score: $\operatorname{score}(q, k) = q^\top W k$.

    $W$ is a learned `(dq, dk)` matrix, so queries and keys may live in
    different spaces and have different sizes. Scores of many queries
    against one memory (an RNN decoder) project the keys once,
    $q^\top (W k)$, with `project_key` and `score_projected`. Under
    `mixed_float16` the products are computed in float32 (see
    `dot_logits`).

    Args:
        kernel_initializer: initializer for $W$. Defaults to
            `"glorot_uniform"`.

    Call arguments:
        query: `(..., Tq, dq)`.
        key: `(..., Tk, dk)`.

    Returns:
        Scores `(..., Tq, Tk)`.

    Examples:
        >>> import numpy as np
        >>> tuple(General()(np.ones((1, 2, 3)), np.ones((1, 4, 5))).shape)
        (1, 2, 4)

    Reference:
        Luong et al., 2015, "Effective Approaches to Attention-based Neural
        Machine Translation".
    """

    def __init__(self, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, query_shape, key_shape=None):
        key_shape = query_shape if key_shape is None else key_shape
        self._check_shapes(query_shape, key_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(query_shape[-1], key_shape[-1]),
            initializer=self.kernel_initializer,
        )

    def call(self, query, key):
        query = _float32_if_half(query)  # see `dot_logits`
        projected = ops.matmul(query, ops.cast(self.kernel, query.dtype))
        return dot_logits(projected, key)  # (..., Tq, Tk)

    def project_key(self, key):
        """$W k$: `(..., Tk, dk) -> (..., Tk, dq)`, once per memory (float32
        for a float16 key, as `call`)."""
        key = _float32_if_half(key)
        return ops.matmul(
            key, _transpose_last(ops.cast(self.kernel, key.dtype))
        )

    def score_projected(self, query, projected_key):
        """$q^\top (W k)$ of raw queries and `project_key(key)`."""
        return dot_logits(query, projected_key)  # (..., Tq, Tk)

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_initializer": utils.serialize(self.kernel_initializer),
        }


@register
class Additive(Score):
    r"""Additive (Bahdanau, "concat", MLP) score.

    $\operatorname{score}(q, k) = v^\top \tanh(W_q q + W_k k)$: a
    one-hidden-layer network of `units` tanh units. With `normalize=True`,
    $v$ is weight-normalised, $g \cdot v / \lVert v \rVert$, and a bias $b$
    is added inside the tanh (as tensorflow-addons'
    `BahdanauAttention(normalize=True)`).

    The key projection $W_k k$ does not depend on the query, so callers that
    score many queries against one memory (an RNN decoder) compute it once
    with `project_key` and then call `score_projected` at every step.

    Args:
        units: hidden size of the MLP, or `None` for the key dimension.
            Defaults to `None`.
        normalize: whether to weight-normalise $v$. Defaults to `False`.
        kernel_initializer: initializer for $W_q$, $W_k$ and $v$. Defaults to
            `"glorot_uniform"`.

    Call arguments:
        query: `(..., Tq, dq)`.
        key: `(..., Tk, dk)`.

    Returns:
        Scores `(..., Tq, Tk)`.

    Examples:
        >>> import numpy as np
        >>> score = Additive(units=8)
        >>> tuple(score(np.ones((1, 2, 3)), np.ones((1, 4, 5))).shape)
        (1, 2, 4)

    Reference:
        Bahdanau et al., 2015, "Neural Machine Translation by Jointly
        Learning to Align and Translate"; Salimans & Kingma, 2016, "Weight
        Normalization".
    """

    def __init__(
        self,
        units=None,
        normalize=False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        utils.check_positive_int("units", units, allow_none=True)
        utils.check_choice("normalize", normalize, (True, False))
        self.units = units
        self.normalize = normalize
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, query_shape, key_shape=None):
        key_shape = query_shape if key_shape is None else key_shape
        self._check_shapes(query_shape, key_shape)
        units = self.units or key_shape[-1]
        init = self.kernel_initializer
        self.query_kernel = self.add_weight(
            name="query_kernel",
            shape=(query_shape[-1], units),
            initializer=init,
        )
        self.key_kernel = self.add_weight(
            name="key_kernel", shape=(key_shape[-1], units), initializer=init
        )
        self.v = self.add_weight(name="v", shape=(units,), initializer=init)
        if self.normalize:
            self.g = self.add_weight(
                name="g",
                shape=(),
                initializer=keras.initializers.Constant(math.sqrt(1 / units)),
            )
            self.b = self.add_weight(
                name="b", shape=(units,), initializer="zeros"
            )

    def project_key(self, key):
        """$W_k k$: `(..., Tk, dk) -> (..., Tk, units)`, once per memory."""
        return ops.matmul(key, self.key_kernel)

    def score_projected(self, query, projected_key):
        """Scores from raw queries and keys already passed to `project_key`."""
        projected_query = ops.matmul(query, self.query_kernel)  # (..., Tq, U)
        hidden = (
            ops.expand_dims(projected_query, -2)  # (..., Tq, 1, U)
            + ops.expand_dims(projected_key, -3)  # (..., 1, Tk, U)
        )
        v = self.v
        if self.normalize:
            hidden = hidden + self.b
            v = self.g * v * ops.rsqrt(ops.sum(ops.square(v)))
        return ops.sum(ops.tanh(hidden) * v, axis=-1)  # (..., Tq, Tk)

    def call(self, query, key):
        return self.score_projected(query, self.project_key(key))

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "normalize": self.normalize,
            "kernel_initializer": utils.serialize(self.kernel_initializer),
        }


@register
class Cosine(Score):
    r"""Cosine score with a temperature:
    $\operatorname{score}(q, k) = \tau \cdot \cos(q, k)$.

    $\cos(q, k) = q^\top k / (\lVert q \rVert \lVert k \rVert)$ is bounded in
    [-1, 1], so the score is insensitive to vector norms; $\tau$ sets how
    peaked the softmax can get and is learned when `learn_scale=True`.

    Args:
        learn_scale: whether $\tau$ is a trainable weight. Defaults to `True`.
        initial_scale: starting (or fixed) value of $\tau$. Defaults to `10.0`.
        epsilon: added to the norms to avoid division by zero. Defaults to
            `1e-6`.

    Call arguments:
        query: `(..., Tq, D)`.
        key: `(..., Tk, D)`.

    Returns:
        Scores `(..., Tq, Tk)`.

    Examples:
        >>> import numpy as np
        >>> tuple(Cosine()(np.ones((1, 2, 3)), np.ones((1, 4, 3))).shape)
        (1, 2, 4)

    Reference:
        Graves et al., 2014, "Neural Turing Machines" (content addressing).
    """

    same_dim = True

    def __init__(
        self, learn_scale=True, initial_scale=10.0, epsilon=1e-6, **kwargs
    ):
        super().__init__(**kwargs)
        utils.check_positive_number("initial_scale", initial_scale)
        utils.check_positive_number("epsilon", epsilon)
        utils.check_choice("learn_scale", learn_scale, (True, False))
        self.learn_scale = learn_scale
        self.initial_scale = initial_scale
        self.epsilon = epsilon

    def build(self, query_shape, key_shape=None):
        key_shape = query_shape if key_shape is None else key_shape
        self._check_shapes(query_shape, key_shape)
        self.scale = self.add_weight(
            name="scale",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_scale),
            trainable=self.learn_scale,
        )

    def call(self, query, key):
        query = ops.cast(query, "float32")  # norms in float32: no fp16 overflow
        key = ops.cast(key, "float32")
        query = query / (ops.norm(query, axis=-1, keepdims=True) + self.epsilon)
        key = key / (ops.norm(key, axis=-1, keepdims=True) + self.epsilon)
        cosine = ops.matmul(query, _transpose_last(key))  # (..., Tq, Tk)
        return ops.cast(self.scale, "float32") * cosine

    def get_config(self):
        return {
            **super().get_config(),
            "learn_scale": self.learn_scale,
            "initial_scale": self.initial_scale,
            "epsilon": self.epsilon,
        }


@register
class Distance(Score):
    r"""Distance-kernel score: near keys matter more.

    - `kernel="inverse"`:
      $\operatorname{score}(q, k) = 1 / (\lVert q - k \rVert / \sigma)$, the
      weather-station score of the lecture notes (a station's relevance is
      the inverse of its distance to the query location).
    - `kernel="gaussian"`:
      $\operatorname{score}(q, k) = -\lVert q - k \rVert^2 / (2\sigma^2)$, so
      that the softmax gives Nadaraya–Watson kernel regression with a
      Gaussian kernel of bandwidth $\sigma$.

    Distances are computed in float32 and floored at `epsilon`, so a query
    that sits exactly on a key gets a large finite score, never `inf`.

    Args:
        kernel: `"inverse"` or `"gaussian"`. Defaults to `"inverse"`.
        bandwidth: initial (or fixed) $\sigma > 0$. Defaults to `1.0`.
        learn_bandwidth: whether $\sigma$ is a trainable weight. Defaults to
            `False`.
        epsilon: smallest distance used. Defaults to `1e-6`.

    Call arguments:
        query: `(..., Tq, D)`, e.g. query locations.
        key: `(..., Tk, D)`, e.g. station locations.

    Returns:
        Scores `(..., Tq, Tk)` in float32.

    Examples:
        >>> import numpy as np
        >>> tuple(Distance()(np.zeros((1, 1, 2)), np.ones((1, 3, 2))).shape)
        (1, 1, 3)

    Reference:
        Nadaraya, 1964; Watson, 1964 (kernel regression); Shepard, 1968
        (inverse distance weighting).
    """

    same_dim = True
    kernels = ("inverse", "gaussian")

    def __init__(
        self,
        kernel="inverse",
        bandwidth=1.0,
        learn_bandwidth=False,
        epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        utils.check_choice("kernel", kernel, self.kernels)
        utils.check_positive_number("bandwidth", bandwidth)
        utils.check_positive_number("epsilon", epsilon)
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.learn_bandwidth = learn_bandwidth
        self.epsilon = epsilon

    def build(self, query_shape, key_shape=None):
        key_shape = query_shape if key_shape is None else key_shape
        self._check_shapes(query_shape, key_shape)
        # Learn log(σ) so that σ stays positive.
        self.log_bandwidth = self.add_weight(
            name="log_bandwidth",
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.bandwidth)),
            trainable=self.learn_bandwidth,
        )

    def call(self, query, key):
        query = ops.cast(query, "float32")
        key = ops.cast(key, "float32")
        # ‖q − k‖² = ‖q‖² + ‖k‖² − 2 qᵀk, without a (Tq, Tk, D) tensor.
        squared = (
            ops.sum(ops.square(query), axis=-1, keepdims=True)
            + ops.expand_dims(ops.sum(ops.square(key), axis=-1), -2)
            - 2.0 * ops.matmul(query, _transpose_last(key))
        )  # (..., Tq, Tk)
        squared = ops.maximum(squared, self.epsilon**2)
        bandwidth = ops.exp(ops.cast(self.log_bandwidth, "float32"))
        if self.kernel == "inverse":
            return bandwidth / ops.sqrt(squared)
        return -squared / (2.0 * ops.square(bandwidth))

    def get_config(self):
        return {
            **super().get_config(),
            "kernel": self.kernel,
            "bandwidth": self.bandwidth,
            "learn_bandwidth": self.learn_bandwidth,
            "epsilon": self.epsilon,
        }


def _check_key_length(length, max_length):
    if length is not None and length > max_length:
        raise ValueError(
            "`Location` score got keys longer than `max_length`. "
            f"Received: key length={length}, max_length={max_length}"
        )


@register
class Location(Score):
    r"""Location-based score: $\operatorname{score}(q, \cdot) = W_a q$,
    ignoring key content.

    Each query predicts a score for every source position directly from its
    own content; the first `Tk` of `max_length` outputs are used.

    Args:
        max_length: int, the longest key sequence supported; required (no
            default): $W_a$ is `(dq, max_length)`, one output per position,
            so its size must be known before any key is seen. Longer keys
            raise a `ValueError`.
        kernel_initializer: initializer for $W_a$. Defaults to
            `"glorot_uniform"`.

    Call arguments:
        query: `(..., Tq, dq)`.
        key: `(..., Tk, dk)`; only its length `Tk <= max_length` is used.

    Returns:
        Scores `(..., Tq, Tk)`.

    Examples:
        >>> import numpy as np
        >>> score = Location(max_length=10)
        >>> tuple(score(np.ones((1, 2, 3)), np.ones((1, 4, 5))).shape)
        (1, 2, 4)

    Reference:
        Luong et al., 2015, "Effective Approaches to Attention-based Neural
        Machine Translation", section 3.1.
    """

    def __init__(
        self, max_length, kernel_initializer="glorot_uniform", **kwargs
    ):
        super().__init__(**kwargs)
        utils.check_positive_int("max_length", max_length)
        self.max_length = max_length
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, query_shape, key_shape=None):
        key_shape = query_shape if key_shape is None else key_shape
        self._check_shapes(query_shape, key_shape)
        _check_key_length(key_shape[-2], self.max_length)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(query_shape[-1], self.max_length),
            initializer=self.kernel_initializer,
        )

    def call(self, query, key):
        _check_key_length(key.shape[-2], self.max_length)
        scores = ops.matmul(query, self.kernel)  # (..., Tq, max_length)
        return scores[..., : ops.shape(key)[-2]]  # (..., Tq, Tk)

    def get_config(self):
        return {
            **super().get_config(),
            "max_length": self.max_length,
            "kernel_initializer": utils.serialize(self.kernel_initializer),
        }


_NAMES = {
    "dot": (Dot, {}),
    "scaled_dot": (ScaledDot, {}),
    "general": (General, {}),
    "bilinear": (General, {}),
    "luong": (General, {}),
    "additive": (Additive, {}),
    "concat": (Additive, {}),
    "mlp": (Additive, {}),
    "bahdanau": (Additive, {}),
    "cosine": (Cosine, {}),
    "distance": (Distance, {}),
    "inverse_distance": (Distance, {"kernel": "inverse"}),
    "gaussian": (Distance, {"kernel": "gaussian"}),
    "location": (Location, {}),
}


def names():
    """The valid score names, sorted."""
    return sorted(_NAMES)


def get(identifier, **kwargs):
    """Return a score layer from a name, a config dict or an instance.

    Args:
        identifier: a `Score` instance (returned as is), a name or alias
            (see the module docstring), or a dict from `serialize` /
            `get_config()` with `class_name` and `config`.
        **kwargs: constructor arguments used with a name, e.g.
            `get("additive", units=64)`; a `dtype` also applies to a config
            dict (a parent layer passes its dtype policy).

    Returns:
        A score layer.

    Examples:
        >>> get("bahdanau", units=16).__class__.__name__
        'Additive'
    """
    if isinstance(identifier, keras.layers.Layer):
        return identifier
    if isinstance(identifier, dict):
        if "dtype" in kwargs:
            config = {**identifier.get("config", {}), "dtype": kwargs["dtype"]}
            identifier = {**identifier, "config": config}
        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str) and identifier.lower() in _NAMES:
        cls, defaults = _NAMES[identifier.lower()]
        return cls(**{**defaults, **kwargs})
    raise ValueError(
        f"Unknown score {identifier!r}. Valid names: {', '.join(names())}; "
        "or pass a score layer instance or its config dict."
    )


def serialize(score):
    """Config dict of a score layer, for a parent layer's `get_config`.

    The build config is dropped: the parent builds the score on its own
    input shapes.
    """
    return utils.serialize(score)
