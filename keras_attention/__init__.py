"""keras-attention: every attention building block for Keras 3."""

from keras_attention import layers
from keras_attention import ops
from keras_attention import scores
from keras_attention.layers import Attention
from keras_attention.layers import AttentionPooling

__version__ = "0.1.0"
