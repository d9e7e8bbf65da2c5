"""Attention layers."""

from keras_attention.layers.attention import Attention
from keras_attention.layers.attention import AttentionPooling
from keras_attention.layers.differential import DifferentialAttention
from keras_attention.layers.dropout import Dropout
from keras_attention.layers.feed_forward import FeedForward
from keras_attention.layers.latent import MultiHeadLatentAttention
from keras_attention.layers.linear import LinearAttention
from keras_attention.layers.masking import Unmasked
from keras_attention.layers.multi_head import MultiHeadAttention
from keras_attention.layers.positional import LearnedPositionalEmbedding
from keras_attention.layers.positional import RotaryEmbedding
from keras_attention.layers.positional import SinusoidalPositionalEncoding
from keras_attention.layers.positional import TokenAndPositionEmbedding
from keras_attention.layers.rnn import AttentionDecoder
from keras_attention.layers.rnn import BahdanauAttention
from keras_attention.layers.rnn import LuongAttention
from keras_attention.layers.stacks import TransformerDecoder
from keras_attention.layers.stacks import TransformerEncoder
from keras_attention.layers.transformer import TransformerDecoderBlock
from keras_attention.layers.transformer import TransformerEncoderBlock
