"""Seq2Seq: an RNN encoder and an attention RNN decoder, as one keras.Model."""

import keras
from keras import ops

from keras_attention.layers.rnn import AttentionDecoder
from keras_attention.layers.rnn import AttentionMechanism
from keras_attention.layers.rnn import get_mechanism
from keras_attention.models.generation import END_ID
from keras_attention.models.generation import PAD_ID
from keras_attention.models.generation import START_ID
from keras_attention.models.generation import Unmasked
from keras_attention.models.generation import compile_generate
from keras_attention.models.generation import next_token_logits
from keras_attention.models.generation import run_decoding


def _rnn_class(cell):
    if cell not in ("gru", "lstm"):
        raise ValueError(
            f"`cell` must be 'gru' or 'lstm'. Received: cell={cell!r}"
        )
    return keras.layers.GRU if cell == "gru" else keras.layers.LSTM


@keras.saving.register_keras_serializable(package="keras_attention")
class Seq2Seq(keras.Model):
    """RNN encoder-decoder with attention (Bahdanau et al. 2015).

    The encoder embeds the source (`mask_zero=True`) and runs `num_layers`
    (bidirectional) GRU/LSTM layers; its outputs are the memory `(B, S, d)`.
    The final encoder states, through a `tanh` bridge, start an
    `AttentionDecoder` that reads the embedded `target_in` (teacher
    forcing) and attends over the memory; a dense layer gives the logits.
    Padded source positions (id 0) are masked everywhere.

    A functional `keras.Model`: `compile()`, `fit()`, `evaluate()`,
    `save()` and `keras.models.load_model` work as usual. `encoder` and
    `decoder` are functional sub-models sharing the weights, and `generate`
    decodes with greedy search, beam search or sampling.

    Args:
        source_vocab_size: int, source vocabulary size (ids 0..V-1).
        target_vocab_size: int, target vocabulary size `V`.
        embedding_dim: embedding size. Defaults to `128`.
        units: size of every RNN. Defaults to `256`.
        attention: `"bahdanau"`, `"luong"` or an attention mechanism (see
            `keras_attention.layers.rnn`). Defaults to `"bahdanau"`.
        cell: `"gru"` or `"lstm"`. Defaults to `"gru"`.
        bidirectional: whether the encoder layers are bidirectional.
            Defaults to `True`.
        num_layers: number of encoder layers and decoder cells. Defaults
            to `1`.
        dropout: dropout between layers and before the logits. Defaults to
            `0.0`.
        input_feeding: whether the decoder feeds its last attentional
            output back into the cell (Luong et al.); without it the
            attention runs once over all steps, which trains faster.
            Defaults to `True`.

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
        Learning to Align and Translate"; Luong et al., 2015.
    """

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        embedding_dim=128,
        units=256,
        attention="bahdanau",
        cell="gru",
        bidirectional=True,
        num_layers=1,
        dropout=0.0,
        input_feeding=True,
        dtype=None,
        **kwargs,
    ):
        rnn = _rnn_class(cell)
        if num_layers < 1:
            raise ValueError(
                f"`num_layers` must be >= 1. Received: {num_layers=}"
            )
        # === Layers ===
        source_embedding = keras.layers.Embedding(
            source_vocab_size,
            embedding_dim,
            mask_zero=True,
            name="source_embedding",
            dtype=dtype,
        )
        target_embedding = keras.layers.Embedding(
            target_vocab_size,
            embedding_dim,
            mask_zero=True,
            name="target_embedding",
            dtype=dtype,
        )
        encoder_layers = []
        for i in range(num_layers):
            layer = rnn(
                units,
                return_sequences=True,
                return_state=True,
                name=f"encoder_{i}",
                dtype=dtype,
            )
            if bidirectional:
                layer = keras.layers.Bidirectional(
                    layer, name=f"encoder_{i}", dtype=dtype
                )
            encoder_layers.append(layer)
        num_states = 2 if cell == "lstm" else 1
        bridges = [
            keras.layers.Dense(
                units, activation="tanh", name=f"bridge_{i}", dtype=dtype
            )
            for i in range(num_layers * num_states)
        ]
        cells = [
            keras.layers.GRUCell(units, name=f"cell_{i}", dtype=dtype)
            if cell == "gru"
            else keras.layers.LSTMCell(units, name=f"cell_{i}", dtype=dtype)
            for i in range(num_layers)
        ]
        decoder_cell = cells[0]
        if num_layers > 1:
            decoder_cell = keras.layers.StackedRNNCells(
                cells, name="cell", dtype=dtype
            )
        mechanism = attention
        if not isinstance(attention, AttentionMechanism):
            mechanism = get_mechanism(attention, units, dtype)
        attention_decoder = AttentionDecoder(
            units,
            attention=mechanism,
            cell=decoder_cell,
            input_feeding=input_feeding,
            return_alignments=True,
            name="decoder",
            dtype=dtype,
        )
        dropout_layer = keras.layers.Dropout(dropout, name="dropout")
        logits_layer = keras.layers.Dense(
            target_vocab_size, name="logits", dtype=dtype
        )

        def encode(source):
            """Memory `(B, S, d)` and the decoder's initial states."""
            memory = source_embedding(source)
            states = []
            for i, layer in enumerate(encoder_layers):
                if i:
                    memory = dropout_layer(memory)
                memory, *final = layer(memory)
                if bidirectional:  # concat forward and backward, bridge
                    forward, backward = final[:num_states], final[num_states:]
                    final = [
                        bridges[i * num_states + j](
                            ops.concatenate([forward[j], backward[j]], -1)
                        )
                        for j in range(num_states)
                    ]
                states.extend(final)
            return memory, states

        def decode(target_in, memory, states, memory_mask=None):
            """Logits `(B, T, V)` and alignments `(B, T, S)`."""
            outputs, alignments = attention_decoder(
                target_embedding(target_in),
                memory,
                memory_mask=memory_mask,
                initial_state=states,
            )
            return logits_layer(dropout_layer(outputs)), alignments

        # === Functional model ===
        source = keras.Input((None,), dtype="int32", name="source")
        target_in = keras.Input((None,), dtype="int32", name="target_in")
        memory, states = encode(source)
        logits, _ = decode(target_in, memory, states)
        super().__init__(
            inputs={"source": source, "target_in": target_in},
            outputs=logits,
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.attention = attention
        self.cell = cell
        self.bidirectional = bidirectional
        self.num_layers = num_layers
        self.dropout = dropout
        self.input_feeding = input_feeding
        self.source_embedding = source_embedding
        self.target_embedding = target_embedding
        self.attention_decoder = attention_decoder
        self.logits_layer = logits_layer
        self._encode = encode
        self._decode = decode

        # === Sub-models (shared weights) ===
        source = keras.Input((None,), dtype="int32", name="source")
        memory, states = encode(source)
        self.encoder = keras.Model(
            source,
            {"memory": Unmasked()(memory), "states": states},
            name="encoder",
        )
        decoder_inputs = {
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
        logits, alignments = decode(
            decoder_inputs["target_in"],
            decoder_inputs["memory"],
            decoder_inputs["states"],
            decoder_inputs["memory_mask"],
        )
        self.decoder = keras.Model(
            decoder_inputs,
            {"logits": logits, "alignments": alignments},
            name="decoder",
        )

    def get_config(self):
        attention = self.attention
        if isinstance(attention, keras.layers.Layer):
            attention = keras.saving.serialize_keras_object(attention)
            attention.pop("build_config", None)
        return {
            "name": self.name,
            "trainable": self.trainable,
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "attention": attention,
            "cell": self.cell,
            "bidirectional": self.bidirectional,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "input_feeding": self.input_feeding,
        }

    def generate_function(
        self,
        source,
        max_length,
        method="greedy",
        beam_width=4,
        length_penalty=0.6,
        coverage_penalty=0.0,
        temperature=1.0,
        top_k=None,
        top_p=None,
        seed=None,
        return_attention=False,
    ):
        """`generate` as plain `keras.ops`, to trace, compile or export.

        Same arguments and returns as `generate`; nothing is compiled or
        cached here, so this is what an export endpoint wraps.
        """
        source = ops.cast(source, "int32")
        memory, states = self._encode(source)
        memory_mask = ops.not_equal(source, PAD_ID)  # (B, S)
        decoder = self.attention_decoder
        state = {
            "decoder": decoder.get_initial_state(ops.shape(source)[0], states),
            "memory": memory,
            "keys": decoder.project_memory(memory),
            "memory_mask": memory_mask,
        }

        def step_fn(tokens, state, index):
            output, alignments, decoder_state = decoder.step(
                self.target_embedding(tokens),
                state["decoder"],
                state["memory"],
                state["keys"],
                state["memory_mask"],
            )
            logits = next_token_logits(self.logits_layer, output)  # (B, V)
            return logits, {**state, "decoder": decoder_state}, alignments

        start = ops.full((ops.shape(source)[0],), START_ID, "int32")
        tokens = run_decoding(
            method,
            step_fn,
            state,
            start,
            max_length,
            END_ID,
            PAD_ID,
            beam_width=beam_width,
            length_penalty=length_penalty,
            coverage_penalty=coverage_penalty,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )
        if not return_attention:
            return tokens
        # The alignments of the chosen tokens: one teacher-forced pass over
        # [start, y_1..y_{L-1}] computes exactly what decoding computed.
        target_in = ops.concatenate([start[:, None], tokens[:, :-1]], axis=1)
        _, alignments = self._decode(target_in, memory, states, memory_mask)
        emitted = ops.not_equal(tokens, PAD_ID)[:, :, None]
        return tokens, ops.where(emitted, alignments, 0.0)

    def generate(
        self,
        source,
        max_length,
        method="greedy",
        beam_width=4,
        length_penalty=0.6,
        coverage_penalty=0.0,
        temperature=1.0,
        top_k=None,
        top_p=None,
        seed=None,
        return_attention=False,
    ):
        """Translate `source` token ids into target token ids.

        Args:
            source: int `(B, S)`, padded with 0.
            max_length: int, the number of target tokens generated.
            method: `"greedy"`, `"beam"` or `"sample"` (see
                `keras_attention.decoding`). Defaults to `"greedy"`.
            beam_width: beams of `"beam"`. Defaults to `4`.
            length_penalty: GNMT `α` of `"beam"`. Defaults to `0.6`.
            coverage_penalty: GNMT `β` of `"beam"`. Defaults to `0.0`.
            temperature: of `"sample"`. Defaults to `1.0`.
            top_k: of `"sample"`. Defaults to `None`.
            top_p: of `"sample"`. Defaults to `None`.
            seed: int seed of `"sample"`. Defaults to `None`.
            return_attention: whether to also return the alignments.
                Defaults to `False`.

        Returns:
            int32 tokens `(B, max_length)` (without the start token, 0
            after the end token 2), and float32 alignments
            `(B, max_length, S)` if `return_attention`.
        """
        return compile_generate(
            self,
            source,
            max_length,
            method=method,
            beam_width=beam_width,
            length_penalty=length_penalty,
            coverage_penalty=coverage_penalty,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            return_attention=return_attention,
        )
