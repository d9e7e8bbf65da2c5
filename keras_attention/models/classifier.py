"""Transformer text classifier: encoder, pooling, classes."""

import keras
from keras import ops

from keras_attention import utils
from keras_attention.constants import START_ID
from keras_attention.layers.attention import AttentionPooling
from keras_attention.layers.dropout import Dropout
from keras_attention.layers.positional import TokenAndPositionEmbedding
from keras_attention.layers.positional import positional_scheme
from keras_attention.layers.stacks import TransformerEncoder
from keras_attention.models.layouts import transformer_layout_map
from keras_attention.models.transformer import check_arguments
from keras_attention.models.transformer import stack_arguments


@keras.saving.register_keras_serializable(package="keras_attention")
class PrependStart(keras.layers.Layer):
    """Prepend the start id (1) to int `(B, T)` ids: `(B, T + 1)`."""

    def call(self, inputs):
        return ops.pad(inputs, ((0, 0), (1, 0)), constant_values=START_ID)

    def compute_output_shape(self, inputs_shape):
        length = inputs_shape[1]
        return (inputs_shape[0], None if length is None else length + 1)


@keras.saving.register_keras_serializable(package="keras_attention")
class FirstToken(keras.layers.Layer):
    """`(B, T, d) -> (B, d)`: the output at the prepended start token."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return inputs[:, 0]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, inputs_shape):
        return (inputs_shape[0], inputs_shape[-1])


def _classifier_graph(config, dtype):
    """Token ids → embedding → encoder → pooling → logits, functional."""
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = tokens
    if config["pooling"] == "cls":
        x = PrependStart(name="prepend_cls")(tokens)
    x = TokenAndPositionEmbedding(
        config["vocab_size"],
        config["hidden_dim"],
        max_length=config["max_length"],
        positional=positional_scheme(config["positional"]).embedding,
        name="embedding",
        dtype=dtype,
    )(x)
    x = Dropout(config["dropout"], name="dropout", dtype=dtype)(x)
    x = TransformerEncoder(
        config["num_layers"], name="encoder", dtype=dtype,
        **stack_arguments(config, causal=False),
    )(x)  # fmt: skip
    x = _pooling(config["pooling"], dtype)(x)
    logits = keras.layers.Dense(
        config["num_classes"], name="logits", dtype=dtype
    )(x)
    return tokens, logits


def _pooling(pooling, dtype):
    """The layer that turns the encoder outputs `(B, T, d)` into `(B, d)`."""
    if pooling == "cls":
        return FirstToken(name="pooling")
    if pooling == "mean":
        return keras.layers.GlobalAveragePooling1D(name="pooling", dtype=dtype)
    return AttentionPooling(name="pooling", dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerClassifier(keras.Model):
    """Transformer encoder over tokens, pooled to a vector, then classes.

    Pooling: `"cls"` prepends a start token (id 1) whose output represents
    the sequence (BERT); `"mean"` averages the unpadded outputs;
    `"attention"` uses `AttentionPooling`, a learned query whose weights
    show which tokens decided.

    Args:
        vocab_size: vocabulary size (id 0 = padding).
        num_classes: number of classes.
        num_layers: encoder blocks. Defaults to `2`.
        hidden_dim: model width. Defaults to `128`.
        num_heads: attention heads. Defaults to `4`.
        intermediate_dim: feed-forward width. Defaults to `512`.
        dropout: dropout rate. Defaults to `0.1`.
        max_length: longest sequence. Defaults to `512`.
        pooling: `"cls"`, `"mean"` or `"attention"`. Defaults to `"cls"`.
        norm_first: pre-norm blocks. Defaults to `True`.
        positional: as `Transformer`'s (T5's bias is bidirectional here).
            Defaults to `"sinusoidal"`.
        score_mod, mask_mod: modifiers of every block's self-attention, as
            `Transformer`'s. Default to `None`.
        attention, attention_options: every block's self-attention, as
            `Transformer`'s. Default to `"multi_head"` and `None`.
        **kwargs: `name`, `trainable`; any other keyword is a
            `ValueError`.

    Call arguments:
        inputs: int `(B, T)` token ids.

    Returns:
        Logits `(B, num_classes)`.

    Examples:
        >>> import numpy as np
        >>> model = TransformerClassifier(20, 3, num_layers=1, hidden_dim=8,
        ...                               num_heads=2, intermediate_dim=16)
        >>> tuple(model(np.ones((2, 5))).shape)
        (2, 3)
    """

    poolings = ("cls", "mean", "attention")

    def __init__(
        self,
        vocab_size,
        num_classes,
        num_layers=2,
        hidden_dim=128,
        num_heads=4,
        intermediate_dim=512,
        dropout=0.1,
        max_length=512,
        pooling="cls",
        norm_first=True,
        positional="sinusoidal",
        score_mod=None,
        mask_mod=None,
        attention="multi_head",
        attention_options=None,
        dtype=None,
        **kwargs,
    ):
        utils.check_no_unknown_kwargs(kwargs)
        config = {
            "vocab_size": vocab_size,
            "num_classes": num_classes,
            "num_layers": num_layers,
            "hidden_dim": hidden_dim,
            "num_heads": num_heads,
            "intermediate_dim": intermediate_dim,
            "dropout": dropout,
            "max_length": max_length,
            "pooling": pooling,
            "norm_first": norm_first,
            "positional": positional,
            "score_mod": score_mod,
            "mask_mod": mask_mod,
            "attention": attention,
            "attention_options": attention_options,
        }
        check_arguments(
            config,
            "vocab_size",
            "num_classes",
            "num_layers",
            "hidden_dim",
            "num_heads",
            "intermediate_dim",
            "max_length",
            choices=(
                ("pooling", self.poolings),
                ("norm_first", (True, False)),
            ),
        )
        dtype = utils.dtype_policy(dtype)
        tokens, logits = _classifier_graph(config, dtype)
        super().__init__(tokens, logits, dtype=dtype, **kwargs)
        self._config, self._built_dtype = config, dtype
        for name, value in config.items():
            setattr(self, name, value)

    def call(self, inputs, training=None, mask=None):
        utils.check_shape("tokens", ops.convert_to_tensor(inputs), (None, None))
        utils.check_token_ids("tokens", inputs, self.vocab_size)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self._built_dtype),
            **self._config,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    get_layout_map = staticmethod(transformer_layout_map)

    def pooling_weights(self, tokens):
        """Attention-pooling weights `(B, T)` (only for `"attention"`)."""
        if self.pooling != "attention":
            raise ValueError(
                "`pooling_weights` needs `pooling='attention'`. "
                f"Received: pooling={self.pooling!r}"
            )
        pooling = self.get_layer("pooling")
        encoder = self.get_layer("encoder")
        hidden = keras.Model(self.input, encoder.output)(tokens)
        mask = ops.not_equal(ops.convert_to_tensor(tokens), 0)
        _, weights = pooling(hidden, mask=mask, return_attention_scores=True)
        return weights
