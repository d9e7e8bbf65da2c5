"""The position-wise feed-forward network of the Transformer blocks."""

import keras

from keras_attention import utils
from keras_attention.layers.dropout import Dropout


@keras.saving.register_keras_serializable(package="keras_attention")
class FeedForward(keras.layers.Layer):
    r"""Position-wise feed-forward network:
    $\operatorname{act}(x W_1 + b_1) W_2 + b_2$.

    Shared by the encoder and decoder blocks.

    Args:
        intermediate_dim: hidden size.
        activation: hidden activation. Defaults to `"relu"`.
        dropout: dropout after the activation. Defaults to `0.0`.
        kernel_initializer: of both kernels. Defaults to `"glorot_uniform"`.

    Call arguments:
        inputs: `(B, T, d)`.
        training: whether dropout is active.

    Returns:
        `(B, T, d)`.

    Reference:
        Vaswani et al., 2017, section 3.3.
    """

    def __init__(
        self,
        intermediate_dim,
        activation="relu",
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        utils.check_positive_int("intermediate_dim", intermediate_dim)
        utils.check_rate("dropout", dropout)
        self.intermediate_dim = intermediate_dim
        self.activation = keras.activations.get(activation)
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def build(self, inputs_shape):
        init = self.kernel_initializer
        self.intermediate = keras.layers.Dense(
            self.intermediate_dim,
            activation=self.activation,
            kernel_initializer=init.__class__.from_config(init.get_config()),
            name="intermediate",
            dtype=self.dtype_policy,
        )
        self.intermediate.build(inputs_shape)
        self.dropout_layer = Dropout(self.dropout, dtype=self.dtype_policy)
        self.output_dense = keras.layers.Dense(
            inputs_shape[-1],
            kernel_initializer=init.__class__.from_config(init.get_config()),
            name="output",
            dtype=self.dtype_policy,
        )
        self.output_dense.build(
            tuple(inputs_shape[:-1]) + (self.intermediate_dim,)
        )

    def call(self, inputs, training=None):
        hidden = self.dropout_layer(
            self.intermediate(inputs), training=training
        )
        return self.output_dense(hidden)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        return {
            **super().get_config(),
            "intermediate_dim": self.intermediate_dim,
            "activation": keras.activations.serialize(self.activation),
            "dropout": self.dropout,
            "kernel_initializer": utils.serialize(self.kernel_initializer),
        }
