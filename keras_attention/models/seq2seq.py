"""Seq2Seq: an RNN encoder and an attention RNN decoder, as one keras.Model."""

import keras
from keras import ops

from keras_attention import utils
from keras_attention.constants import PAD_ID
from keras_attention.layers.dropout import Dropout
from keras_attention.layers.masking import Unmasked
from keras_attention.layers.rnn import AttentionDecoder
from keras_attention.layers.rnn import get_mechanism
from keras_attention.layers.rnn import rnn_classes
from keras_attention.models.generation import Generator


def _rnn(cell, units, name, dtype, bidirectional):
    """One encoder layer: a GRU/LSTM returning sequences and states."""
    layer = rnn_classes(cell)[1](
        units, return_sequences=True, return_state=True, name=name, dtype=dtype
    )
    if bidirectional:
        layer = keras.layers.Bidirectional(layer, name=name, dtype=dtype)
    return layer


def _decoder_cell(cell, units, num_layers, dtype):
    """The decoder's cell: one GRU/LSTM cell per layer, stacked if several."""
    cell_class = rnn_classes(cell)[0]
    cells = [
        cell_class(units, name=f"cell_{i}", dtype=dtype)
        for i in range(num_layers)
    ]
    if num_layers == 1:
        return cells[0]
    return keras.layers.StackedRNNCells(cells, name="cell", dtype=dtype)


class _Seq2SeqParts:
    """The named parts of a `Seq2Seq` and how data flows through them.

    embeddings → encoder (RNN layers, bridges to the decoder's initial
    states) → attention decoder → logits head.
    """

    def __init__(self, config, dtype):
        units, cell = config["units"], config["cell"]
        layers = config["num_layers"]
        # === Embeddings (id 0 = padding, masked downstream) ===
        self.source_embedding, self.target_embedding = (
            keras.layers.Embedding(
                config[f"{side}_vocab_size"],
                config["embedding_dim"],
                mask_zero=True,
                name=f"{side}_embedding",
                dtype=dtype,
            )
            for side in ("source", "target")
        )
        # === Encoder ===
        self.bidirectional = config["bidirectional"]
        self.num_states = rnn_classes(cell)[2]  # per layer: 2 for an LSTM
        self.encoder_layers = [
            _rnn(cell, units, f"encoder_{i}", dtype, self.bidirectional)
            for i in range(layers)
        ]
        self.bridges = [
            keras.layers.Dense(
                units, activation="tanh", name=f"bridge_{i}", dtype=dtype
            )
            for i in range(layers * self.num_states)
        ]
        # === Decoder ===
        self.attention_decoder = AttentionDecoder(
            units,
            attention=get_mechanism(config["attention"], units, dtype),
            cell=_decoder_cell(cell, units, layers, dtype),
            attention_output=config["attention_output"],
            input_feeding=config["input_feeding"],
            return_alignments=True,
            name="decoder",
            dtype=dtype,
        )
        # === Head ===
        self.output_norm = None
        norm = config["output_norm"]
        if norm or (norm is None and config["attention_output"] == "concat"):
            self.output_norm = keras.layers.LayerNormalization(
                name="output_norm", dtype=dtype
            )
        self.dropout = Dropout(config["dropout"], name="dropout", dtype=dtype)
        self.logits = keras.layers.Dense(
            config["target_vocab_size"], name="logits", dtype=dtype
        )

    def encode(self, source):
        """Memory `(B, S, d)` and the decoder's initial states."""
        memory = self.source_embedding(source)
        states = []
        for i, layer in enumerate(self.encoder_layers):
            memory, *final = layer(self.dropout(memory))
            if self.bidirectional:  # concat forward and backward, bridge
                n = self.num_states
                final = [
                    self.bridges[i * n + j](
                        ops.concatenate([final[j], final[n + j]], -1)
                    )
                    for j in range(n)
                ]
            states.extend(final)
        return memory, states

    def decode(self, target_in, memory, states, memory_mask=None):
        """Logits `(B, T, V)` and alignments `(B, T, S)`."""
        outputs, alignments = self.attention_decoder(
            self.dropout(self.target_embedding(target_in)),
            memory,
            memory_mask=memory_mask,
            initial_state=states,
        )
        return self.head(outputs), alignments

    def head(self, outputs):
        """Logits from the decoder's attentional outputs."""
        if self.output_norm is not None:
            outputs = self.output_norm(outputs)
        return self.logits(self.dropout(outputs))


def _check_arguments(config):
    """Raise a `ValueError` naming the first bad constructor argument."""
    for name in (
        "source_vocab_size",
        "target_vocab_size",
        "embedding_dim",
        "units",
        "num_layers",
    ):
        utils.check_positive_int(name, config[name])
    utils.check_rate("dropout", config["dropout"])
    rnn_classes(config["cell"])  # a `ValueError` naming `cell` if unknown
    for name in ("bidirectional", "input_feeding"):
        utils.check_choice(name, config[name], (True, False))
    utils.check_choice(
        "output_norm", config["output_norm"], (None, True, False)
    )
    # `attention_output` is checked by the `AttentionDecoder` that owns it.


@keras.saving.register_keras_serializable(package="keras_attention")
class Seq2Seq(Generator, keras.Model):
    r"""RNN encoder-decoder with attention (Bahdanau et al.; Luong et al.).

    The encoder embeds the source (`mask_zero=True`) and runs `num_layers`
    (bidirectional) GRU/LSTM layers; its outputs are the memory `(B, S, d)`.
    The final encoder states, through a `tanh` bridge, start an
    `AttentionDecoder` that reads the embedded `target_in` (teacher
    forcing) and attends over the memory; its attentional outputs
    $a_t = \operatorname{LayerNorm}(h_t + W_c c_t)$ (by default) go through
    a dense layer to the logits. Padded source positions (id 0) are masked
    everywhere, in training as in generation.

    The defaults are the configuration that learned fastest on 6k real
    English → Spanish sentence pairs (docs: "Training on real data"): a
    residual attentional output, Luong's bilinear score, no input feeding
    and 256-wide embeddings. After four epochs the held-out BLEU was 14.6
    with them and 5.3 with Bahdanau's score, a `"concat"` output (with its
    norm), input feeding and 128-wide embeddings.

    A functional `keras.Model`: `compile()`, `fit()`, `evaluate()`,
    `save()` and `keras.models.load_model` work as usual. `encoder` and
    `decoder` are functional sub-models sharing the weights, and `generate`
    decodes with greedy search, beam search or sampling.

    Args:
        source_vocab_size: int, source vocabulary size (ids 0..V-1).
        target_vocab_size: int, target vocabulary size `V`.
        embedding_dim: embedding size. Defaults to `256`.
        units: size of every RNN. Defaults to `256`.
        attention: `"luong"` (`LuongAttention("general")`, the score
            $h_t^\top W m_s$), `"bahdanau"` or an attention mechanism (see
            `keras_attention.layers.rnn`). Defaults to `"luong"`.
        cell: `"gru"` or `"lstm"`. Defaults to `"gru"`.
        bidirectional: whether the encoder layers are bidirectional.
            Defaults to `True`.
        num_layers: number of encoder layers and decoder cells. Defaults
            to `1`.
        dropout: dropout on the embeddings, between layers and before the
            logits. Defaults to `0.0`.
        input_feeding: whether the decoder feeds its last attentional
            output back into the cell (Luong et al.); without it the
            attention runs once over all steps, which trains faster.
            Defaults to `False`.
        attention_output: the decoder's attentional output, `"residual"`
            ($\operatorname{LayerNorm}(h_t + W_c c_t)$, as the TensorFlow
            NMT tutorial) or `"concat"` ($\tanh(W_c [h_t; c_t])$, Luong et
            al.; see `AttentionDecoder`). Defaults to `"residual"`.
        output_norm: whether a `LayerNormalization` sits between the
            attentional output and the logits; `None` puts one after a
            `"concat"` output only (a `"residual"` output ends in one). The
            bounded `tanh` output feeding a wide softmax trains slowly: on
            6k real sentence pairs the loss after 120 steps was 6.1 without
            the norm and 4.9 with it. Defaults to `None`.
        dtype: the dtype policy of every layer, e.g. `"mixed_float16"`,
            kept in the config. Defaults to `None` (the global policy).
        **kwargs: `name` and `trainable`, as for `keras.Model`; any other
            keyword (a misspelt `dropuot=`) raises a `ValueError` naming it.

    Call arguments:
        inputs: dict with `"source"` int `(B, S)` and `"target_in"` int
            `(B, T)` (the target shifted right, starting with id 1).

    Returns:
        Logits `(B, T, V)`.

    Examples:
        >>> import numpy as np
        >>> model = Seq2Seq(20, 30, embedding_dim=8, units=8)
        >>> inputs = {"source": np.ones((2, 5)), "target_in": np.ones((2, 3))}
        >>> tuple(model(inputs).shape)
        (2, 3, 30)

    Reference:
        Bahdanau et al., 2015, "Neural Machine Translation by Jointly
        Learning to Align and Translate"; Luong et al., 2015, "Effective
        Approaches to Attention-based Neural Machine Translation".
    """

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        embedding_dim=256,
        units=256,
        attention="luong",
        cell="gru",
        bidirectional=True,
        num_layers=1,
        dropout=0.0,
        input_feeding=False,
        attention_output="residual",
        output_norm=None,
        dtype=None,
        **kwargs,
    ):
        # Functional `keras.Model` takes `**kwargs` quietly: a misspelt
        # `dropuot=0.3` must not be ignored.
        utils.check_no_unknown_kwargs(kwargs)
        config = {
            "source_vocab_size": source_vocab_size,
            "target_vocab_size": target_vocab_size,
            "embedding_dim": embedding_dim,
            "units": units,
            "attention": attention,
            "cell": cell,
            "bidirectional": bidirectional,
            "num_layers": num_layers,
            "dropout": dropout,
            "input_feeding": input_feeding,
            "attention_output": attention_output,
            "output_norm": output_norm,
        }
        _check_arguments(config)
        dtype = utils.dtype_policy(dtype)
        parts = _Seq2SeqParts(config, dtype)

        # === Functional model ===
        source = keras.Input((None,), dtype="int32", name="source")
        target_in = keras.Input((None,), dtype="int32", name="target_in")
        memory_mask = ops.not_equal(source, PAD_ID)  # as when generating
        logits, _ = parts.decode(
            target_in, *parts.encode(source), memory_mask=memory_mask
        )
        super().__init__(
            inputs={"source": source, "target_in": target_in},
            outputs=logits,
            dtype=dtype,
            **kwargs,
        )

        # === Config and parts ===
        self._keep(config, parts, dtype)
        self.attention_decoder = parts.attention_decoder

    def _sub_models(self):
        """Functional `encoder` and `decoder` sharing the model's weights."""
        parts, dtype = self._parts, self._built_dtype
        source = keras.Input((None,), dtype="int32", name="source")
        memory, states = parts.encode(source)
        encoder = keras.Model(
            source,
            {"memory": Unmasked(dtype=dtype)(memory), "states": states},
            name="encoder",
            dtype=dtype,
        )
        inputs = {
            "target_in": keras.Input((None,), dtype="int32", name="target_in"),
            "memory": keras.Input(memory.shape[1:], name="memory"),
            "memory_mask": keras.Input(
                (None,), dtype="bool", name="memory_mask"
            ),
            "states": [
                keras.Input(state.shape[1:], name=f"state_{i}")
                for i, state in enumerate(states)
            ],
        }
        logits, alignments = parts.decode(
            inputs["target_in"],
            inputs["memory"],
            inputs["states"],
            inputs["memory_mask"],
        )
        decoder = keras.Model(
            inputs,
            {"logits": logits, "alignments": alignments},
            name="decoder",
            dtype=dtype,
        )
        return encoder, decoder

    @classmethod
    def from_config(cls, config):
        # Saved before these options existed: the classic decoder and head.
        return cls(
            **{"attention_output": "concat", "output_norm": False, **config}
        )

    def get_config(self):
        config = super().get_config()
        attention = config["attention"]
        if isinstance(attention, keras.layers.Layer):
            attention = utils.serialize(attention)
        return {**config, "attention": attention}

    # === Generation (see `Generator`) ===

    def decoding_state(self, source, max_length):
        memory, states = self._parts.encode(source)
        decoder = self.attention_decoder
        return {
            "decoder": decoder.get_initial_state(ops.shape(source)[0], states),
            "encoder_states": states,
            "memory": memory,
            "keys": decoder.project_memory(memory),
            "memory_mask": ops.not_equal(source, PAD_ID),  # (B, S)
        }

    def decoding_step(self, tokens, state, index):
        output, alignments, decoder_state = self.attention_decoder.step(
            self.target_embedding(tokens),
            state["decoder"],
            state["memory"],
            state["keys"],
            state["memory_mask"],
        )
        logits = self._parts.head(output)  # (B, V)
        return logits, {**state, "decoder": decoder_state}, alignments

    def teacher_forced_alignments(self, state, target_in):
        _, alignments = self._parts.decode(
            target_in,
            state["memory"],
            state["encoder_states"],
            state["memory_mask"],
        )
        return alignments
