"""keras-attention: every attention building block for Keras 3."""

from keras_attention import callbacks
from keras_attention import chunked
from keras_attention import constants
from keras_attention import decoding
from keras_attention import layers
from keras_attention import models
from keras_attention import ops
from keras_attention import scores
from keras_attention.layers import Attention
from keras_attention.layers import AttentionDecoder
from keras_attention.layers import AttentionPooling
from keras_attention.layers import BahdanauAttention
from keras_attention.layers import DifferentialAttention
from keras_attention.layers import LearnedPositionalEmbedding
from keras_attention.layers import LinearAttention
from keras_attention.layers import LuongAttention
from keras_attention.layers import MultiHeadAttention
from keras_attention.layers import MultiHeadLatentAttention
from keras_attention.layers import RotaryEmbedding
from keras_attention.layers import SinusoidalPositionalEncoding
from keras_attention.layers import TokenAndPositionEmbedding
from keras_attention.layers import TransformerDecoder
from keras_attention.layers import TransformerDecoderBlock
from keras_attention.layers import TransformerEncoder
from keras_attention.layers import TransformerEncoderBlock

__version__ = "0.1.0"
