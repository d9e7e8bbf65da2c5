"""The attention layers a Transformer block can use, by name."""

import inspect

import keras

from keras_attention import utils
from keras_attention.layers.differential import DifferentialAttention
from keras_attention.layers.latent import MultiHeadLatentAttention
from keras_attention.layers.linear import LinearAttention
from keras_attention.layers.multi_head import MultiHeadAttention

# The self-attention a block can use, by name (cross-attention stays
# multi-head). Each takes `(num_heads, key_dim, **options)`.
ATTENTION_KINDS = {
    "multi_head": MultiHeadAttention,
    "latent": MultiHeadLatentAttention,
    "differential": DifferentialAttention,
    "linear": LinearAttention,
}


def accepted_arguments(cls):
    """The constructor arguments of an attention class, its parents' too
    where it passes `**kwargs` on (e.g. `DifferentialAttention`)."""
    names = set()
    for klass in cls.__mro__:
        if klass is keras.layers.Layer or "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        names |= {
            p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD
        }
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names - {"self"}


def check_options(kind, options):
    """Raise a `ValueError` naming every option `kind`'s layer does not
    take."""
    unknown = sorted(set(options) - accepted_arguments(ATTENTION_KINDS[kind]))
    if unknown:
        raise ValueError(
            f"Unknown `attention_options` for attention={kind!r}: "
            f"{', '.join(unknown)}. Received: attention_options={options!r}"
        )


def self_attention_arguments(kind, key_dim, arguments):
    """The block's self-attention arguments for `kind`: `None`s dropped,
    `ValueError`s naming what the kind cannot take, and its defaults (a
    latent of `4 · key_dim`, DeepSeek-V2's ratio; a rotary part of half a
    head when the positions are rotary). A linear attention has no weights
    to drop and its own O(T) causal pass: the block's `dropout` (still on
    the residuals) and `chunk_size` are not passed to it."""
    arguments = {k: v for k, v in arguments.items() if v is not None}
    if kind == "linear":
        arguments.pop("dropout", None)
        arguments.pop("chunk_size", None)
    if kind == "latent":
        for name in ("score", "num_key_value_heads"):
            if name in arguments:
                raise ValueError(
                    f"`attention='latent'` takes no `{name}`. Received: "
                    f"{name}={arguments[name]!r}"
                )
        arguments.setdefault("kv_latent_dim", 4 * key_dim)
        if "rotary_max_wavelength" in arguments:
            arguments.setdefault("rotary_dim", 2 * max(key_dim // 4, 1))
    return arguments


def serialize_options(options):
    """`attention_options` for a config: modifiers and other Keras objects
    as their configs."""
    return {
        name: utils.serialize(value) if hasattr(value, "get_config") else value
        for name, value in options.items()
    }
