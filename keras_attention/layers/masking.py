"""`Unmasked`: stop a Keras mask at a point of a functional graph."""

import keras

from keras_attention import ops as attention_ops


@keras.saving.register_keras_serializable(package="keras_attention")
class Unmasked(keras.layers.Layer):
    """Identity that drops the Keras mask of its input.

    The functional-API form of `keras_attention.ops.without_mask`. The
    `.encoder` sub-models of the prebuilt models return their memory through
    it: the `.decoder` sub-models take the source padding as an explicit
    `memory_mask`, so no mask (and no "destroys the mask" warning) rides
    along when one is fed into the other.

    Call arguments:
        inputs: a tensor, with or without a Keras mask.

    Returns:
        The same values, without a mask.

    Examples:
        >>> import numpy as np
        >>> tuple(Unmasked()(np.ones((2, 3))).shape)
        (2, 3)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return attention_ops.without_mask(inputs)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return input_shape
