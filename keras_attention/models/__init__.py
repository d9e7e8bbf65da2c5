"""Prebuilt encoder-decoder models: plain functional `keras.Model`s."""

from keras_attention.models.classifier import TransformerClassifier
from keras_attention.models.seq2seq import Seq2Seq
from keras_attention.models.transformer import Transformer
