"""Attention layers."""

from keras_attention.layers.attention import Attention
from keras_attention.layers.attention import AttentionPooling
