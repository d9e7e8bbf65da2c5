r"""Attention for recurrent decoders: Bahdanau, Luong, `AttentionDecoder`.

What `tfa.seq2seq` (`BahdanauAttention`, `LuongAttention`,
`AttentionWrapper`) offered, in Keras 3: a mechanism scores one decoder query
$h_t$ against the encoder memory $m_1 \dots m_S$,
$\alpha_t = \operatorname{softmax}_s(\operatorname{score}(h_t, m_s))$ over the
unpadded source positions, and returns the context
$c_t = \sum_s \alpha_{ts} m_s$. The memory-side projection does not depend on
the query, so it is computed once per source sequence (`project_memory`) and
reused at every decoder step.
"""

import keras
from keras import ops

from keras_attention import kernel
from keras_attention import ops as attention_ops
from keras_attention import scores
from keras_attention import utils

register = keras.saving.register_keras_serializable(package="keras_attention")


def _check_memory(memory, memory_mask, name, tensor):
    """Raise a `ValueError` naming `memory` or `memory_mask` if misshapen.

    The memory must have the batch of the call's first input `tensor`
    (named `name`, `query` or `inputs`); the message gives both.
    """
    utils.check_shape("memory", memory, (None, None, None))
    batch = tensor.shape[0]
    if None not in (batch, memory.shape[0]) and memory.shape[0] != batch:
        raise ValueError(
            f"Invalid shape for argument `memory`: expected the batch size "
            f"{batch} of `{name}`. Received: memory.shape="
            f"{tuple(memory.shape)}, {name}.shape={tuple(tensor.shape)}"
        )
    utils.check_shape("memory_mask", memory_mask, (batch, memory.shape[1]))


class AttentionMechanism(keras.layers.Layer):
    """Base class: one query `(B, dq)` attends over a memory `(B, S, d)`.

    Subclasses set `self.score` (a layer of `keras_attention.scores`). The
    memory is projected once per source by the score's own `project_key`
    (`project_memory`) and scored at every step by its `score_projected`
    (`score_keys`), so a mechanism computes exactly what its score does,
    float32 upcast under `mixed_float16` included.
    """

    def build(self, query_shape, memory_shape):
        if len(query_shape) != 2 or len(memory_shape) != 3:
            raise ValueError(
                f"`{type(self).__name__}` expects `query` (B, dq) and "
                f"`memory` (B, S, d). Received: query.shape="
                f"{tuple(query_shape)}, memory.shape={tuple(memory_shape)}"
            )
        if not self.score.built:
            self.score.build((None, 1, query_shape[-1]), memory_shape)
        self.built = True

    def project_memory(self, memory):
        """Keys of the memory, `(B, S, d) -> (B, S, dk)`; once per source."""
        return self.score.project_key(memory)

    def score_keys(self, query, keys):
        """Unnormalised scores `(B, Tq, S)` of queries `(B, Tq, dq)`."""
        return self.score.score_projected(query, keys)

    def attend(self, query, memory, keys, memory_mask=None):
        """Queries `(B, Tq, dq)` -> context `(B, Tq, d)`, weights `(B, Tq, S)`.

        `keys` is `project_memory(memory)`; several queries (e.g. all the
        decoder steps when nothing feeds back) are scored at once.
        """
        # The one attention kernel: the mechanism's score, the padding
        # mask, the softmax, the weighted sum of the memory.
        return kernel.attention(
            query, keys, memory, score=self.score_keys, key_mask=memory_mask,
            return_weights=True, allow_fused=False,
        )  # fmt: skip

    def call(self, query, memory, memory_mask=None, keys=None):
        utils.check_shape("query", query, (None, None))
        _check_memory(memory, memory_mask, "query", query)
        memory = attention_ops.hide_unseen(memory, memory_mask)
        keys = self.project_memory(memory) if keys is None else keys
        context, alignments = self.attend(
            ops.expand_dims(query, 1), memory, keys, memory_mask
        )
        return context[:, 0, :], alignments[:, 0, :]  # (B, d), (B, S)

    def compute_output_spec(self, query, memory, memory_mask=None, keys=None):
        batch, dim = query.shape[0], memory.shape[-1]
        return (
            keras.KerasTensor((batch, dim), dtype=self.compute_dtype),
            keras.KerasTensor((batch, memory.shape[1]), dtype="float32"),
        )


@register
class BahdanauAttention(AttentionMechanism):
    r"""Additive attention of Bahdanau et al. for an RNN decoder.

    $\operatorname{score}(h, m_s) = v^\top \tanh(W_q h + W_m m_s)$,
    $\alpha = \operatorname{softmax}(\operatorname{score})$ over the unpadded
    source positions, context $c = \sum_s \alpha_s m_s$. $W_m m_s$ is
    computed once per source sequence by `project_memory`. With
    `normalize=True`, $v$ is weight-normalised and a bias added inside the
    tanh (tensorflow-addons' `BahdanauAttention(normalize=True)`).

    Args:
        units: size of the hidden layer of the score MLP.
        normalize: whether to weight-normalise $v$. Defaults to `False`.

    Call arguments:
        query: `(B, dq)`, the decoder output at this step.
        memory: `(B, S, d)`, the encoder outputs.
        memory_mask: optional bool `(B, S)`, `False` at padded positions.
        keys: optional `project_memory(memory)`, to skip recomputing it.

    Returns:
        Tuple `(context, alignments)`: `(B, d)` and float32 `(B, S)`.

    Examples:
        >>> import numpy as np
        >>> layer = BahdanauAttention(units=8)
        >>> context, alignments = layer(np.ones((2, 4)), np.ones((2, 5, 6)))
        >>> tuple(context.shape), tuple(alignments.shape)
        ((2, 6), (2, 5))

    Reference:
        Bahdanau et al., 2015, "Neural Machine Translation by Jointly
        Learning to Align and Translate".
    """

    def __init__(self, units, normalize=False, **kwargs):
        super().__init__(**kwargs)
        utils.check_positive_int("units", units)
        self.units = units
        self.normalize = normalize
        self.score = scores.Additive(
            units, normalize=normalize, name="score", dtype=self.dtype_policy
        )

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, normalize=self.normalize)
        return config


@register
class LuongAttention(AttentionMechanism):
    r"""Multiplicative attention of Luong et al. for an RNN decoder.

    Scores of the query $h$ against memory $m_s$ (Luong 2015, eq. 8):

    - `"general"`: $h^\top W m_s$, with $W m_s$ computed once per source
      (`scores.General`'s `project_key`);
    - `"dot"`: $h^\top m_s$ (needs `dq == d`);
    - `"concat"`: $v^\top \tanh(W [h; m_s])$ (additive, `units` hidden units);
    - `"location"`: $W_a h$ (ignores the memory content; `max_length`).

    With `scale=True` the scores are multiplied by a learned scalar $g$
    (tensorflow-addons' `LuongAttention(scale=True)`).

    Args:
        units: hidden size of the `"concat"` score. Defaults to `None` (the
            memory size). Unused by the other scores.
        score: `"general"`, `"dot"`, `"concat"` or `"location"`. Defaults to
            `"general"`.
        scale: whether to learn a scalar multiplier. Defaults to `False`.
        max_length: the longest source supported: required by
            `"location"` (a `ValueError` without it), unused by the other
            scores. Defaults to `None`.

    Call arguments:
        query: `(B, dq)`, the decoder output at this step.
        memory: `(B, S, d)`, the encoder outputs.
        memory_mask: optional bool `(B, S)`, `False` at padded positions.
        keys: optional `project_memory(memory)`, to skip recomputing it.

    Returns:
        Tuple `(context, alignments)`: `(B, d)` and float32 `(B, S)`.

    Examples:
        >>> import numpy as np
        >>> layer = LuongAttention(score="general")
        >>> context, alignments = layer(np.ones((2, 4)), np.ones((2, 5, 6)))
        >>> tuple(context.shape), tuple(alignments.shape)
        ((2, 6), (2, 5))

    Reference:
        Luong et al., 2015, "Effective Approaches to Attention-based Neural
        Machine Translation".
    """

    score_names = ("general", "dot", "concat", "location")

    def __init__(
        self, units=None, score="general", scale=False, max_length=None, **kw
    ):
        super().__init__(**kw)
        utils.check_choice("score", score, self.score_names)
        utils.check_positive_int("units", units, allow_none=True)
        utils.check_choice("scale", scale, (True, False))
        self.units = units
        self.score_name = score
        self.scale = scale
        self.max_length = max_length
        options = {"concat": {"units": units}}
        options["location"] = {"max_length": max_length}
        self.score = scores.get(
            score,
            name="score",
            dtype=self.dtype_policy,
            **options.get(score, {}),
        )

    def build(self, query_shape, memory_shape):
        super().build(query_shape, memory_shape)
        if self.scale:
            self.scale_weight = self.add_weight(
                name="scale", shape=(), initializer="ones"
            )

    def score_keys(self, query, keys):
        scores_ = super().score_keys(query, keys)  # (B, Tq, S)
        if self.scale:
            scores_ = scores_ * ops.cast(self.scale_weight, scores_.dtype)
        return scores_

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            score=self.score_name,
            scale=self.scale,
            max_length=self.max_length,
        )
        return config


def _write(buffer, index, value):
    """`buffer[:, index] = value` as an elementwise `where` (no scatter)."""
    position = ops.arange(ops.shape(buffer)[1]) == index  # (T,)
    position = ops.reshape(position, (1, -1, 1))
    return ops.where(position, ops.expand_dims(value, 1), buffer)


def get_mechanism(identifier, units, dtype=None):
    """An attention mechanism from a name, a config dict or an instance."""
    if isinstance(identifier, AttentionMechanism):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if identifier == "bahdanau":
        return BahdanauAttention(units, name="attention", dtype=dtype)
    if identifier == "luong":
        return LuongAttention(name="attention", dtype=dtype)
    raise ValueError(
        "`attention` must be 'bahdanau', 'luong' or an attention mechanism "
        f"instance. Received: attention={identifier!r}"
    )


# The one place that maps the names "gru" and "lstm" to Keras classes:
# (cell, layer, number of state tensors).
_RNNS = {
    "gru": (keras.layers.GRUCell, keras.layers.GRU, 1),
    "lstm": (keras.layers.LSTMCell, keras.layers.LSTM, 2),  # h and c
}


def rnn_classes(cell):
    """`(cell class, layer class, number of states)` of `"gru"` or `"lstm"`.

    Raises a `ValueError` naming `cell` for any other value.

    Examples:
        >>> rnn_classes("lstm")[1].__name__
        'LSTM'
    """
    utils.check_choice("cell", cell, tuple(_RNNS))
    return _RNNS[cell]


def get_cell(identifier, units, dtype=None):
    """A Keras RNN cell from 'gru', 'lstm', a config dict or an instance."""
    if isinstance(identifier, keras.layers.Layer):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str) and identifier in _RNNS:
        cell_class = rnn_classes(identifier)[0]
        return cell_class(units, name="cell", dtype=dtype)
    raise ValueError(
        "`cell` must be 'gru', 'lstm' or a Keras RNN cell instance. "
        f"Received: cell={identifier!r}"
    )


@register
class AttentionDecoder(keras.layers.Layer):
    r"""An RNN decoder that attends over an encoder memory at every step.

    At step $t$ (Luong et al. 2015, with tfa's `AttentionWrapper` layout):

    $$
    \begin{aligned}
    h_t, s_t &= \operatorname{cell}([x_t; a_{t-1}], s_{t-1})
        && a_{t-1} \text{ only if } \mathtt{input\_feeding} \\
    c_t, \alpha_t &= \operatorname{attention}(h_t, \mathrm{memory})
        && \alpha_t\text{: } (B, S) \text{, sums to } 1 \\
    a_t &= \tanh(W_c [h_t; c_t])
        && \text{"concat": the output } (B, A) \\
    a_t &= \operatorname{LayerNorm}(h_t + W_c c_t)
        && \text{or "residual"}
    \end{aligned}
    $$

    The recurrence over the `T` steps runs in `utils.fori_loop`, a loop of
    known length in `keras.ops` (a `while_loop` with `maximum_iterations` on
    TensorFlow, a `scan` on JAX, a Python loop on PyTorch), so the layer is
    an ordinary layer of a functional model (it trains, saves, loads and
    exports), and `step` runs one step for decoding. Padded source
    positions (from `memory_mask`, or the Keras mask of `memory`) get
    weight exactly 0, so the outputs never depend on padded memory content.

    The decoder state is a flat list: the cell's states, then $a_t$.

    Args:
        units: size of the RNN cell.
        attention: `"bahdanau"` (`BahdanauAttention(units)`), `"luong"`
            (`LuongAttention("general")`), an attention mechanism instance
            or its config. Defaults to `"bahdanau"`.
        cell: `"gru"`, `"lstm"` or a Keras RNN cell (e.g. a
            `StackedRNNCells`). Defaults to `"gru"`.
        attention_layer_size: size `A` of the attentional output $a_t$.
            Defaults to `None`: `units`. A `"residual"` output has the
            cell's output size.
        attention_output: how $a_t$ combines $h_t$ and $c_t$: `"concat"`
            (Luong et al.'s $\tanh(W_c [h_t; c_t])$) or `"residual"`
            ($\operatorname{LayerNorm}(h_t + W_c c_t)$, the TensorFlow NMT
            tutorial's output; it keeps a direct path from the logits to the
            cell). Defaults to `"concat"`.
        input_feeding: whether $a_{t-1}$ is fed to the cell with $x_t$.
            Defaults to `True`.
        return_sequences: whether to return all `T` outputs or the last.
            Defaults to `True`.
        return_alignments: whether to also return $\alpha$. Defaults to `False`.
        return_state: whether to also return the final decoder state.
            Defaults to `False`.

    Call arguments:
        inputs: `(B, T, e)` embedded target tokens (teacher forcing).
        memory: `(B, S, d)` encoder outputs, the batch `B` of `inputs`.
        memory_mask: optional bool `(B, S)`; filled by Keras from the mask
            of `memory` (e.g. an `Embedding(mask_zero=True)` upstream).
        initial_state: optional cell state (as the cell's `state_size`) or a
            full decoder state as returned with `return_state`. Defaults to
            zeros.
        training: passed to the cell.

    Returns:
        Outputs `(B, T, A)` (`(B, A)` without `return_sequences`), then
        float32 alignments `(B, T, S)` if `return_alignments`, then the
        final state (a list) if `return_state`.

    Examples:
        >>> import numpy as np
        >>> decoder = AttentionDecoder(8, return_alignments=True)
        >>> inputs, memory = np.ones((2, 3, 4)), np.ones((2, 5, 6))
        >>> outputs, alignments = decoder(inputs, memory)
        >>> tuple(outputs.shape), tuple(alignments.shape)
        ((2, 3, 8), (2, 3, 5))

    Reference:
        Bahdanau et al., 2015; Luong et al., 2015, "Effective Approaches to
        Attention-based Neural Machine Translation".
    """

    def __init__(
        self,
        units,
        attention="bahdanau",
        cell="gru",
        attention_layer_size=None,
        attention_output="concat",
        input_feeding=True,
        return_sequences=True,
        return_alignments=False,
        return_state=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        utils.check_positive_int("units", units)
        utils.check_positive_int(
            "attention_layer_size", attention_layer_size, allow_none=True
        )
        for name, value in (
            ("input_feeding", input_feeding),
            ("return_sequences", return_sequences),
            ("return_alignments", return_alignments),
            ("return_state", return_state),
        ):
            utils.check_choice(name, value, (True, False))
        utils.check_choice(
            "attention_output", attention_output, ("concat", "residual")
        )
        self.units = units
        self.attention = get_mechanism(attention, units, self.dtype_policy)
        self.cell = get_cell(cell, units, self.dtype_policy)
        self.attention_layer_size = attention_layer_size
        self.attention_output = attention_output
        self.input_feeding = input_feeding
        self.return_sequences = return_sequences
        self.return_alignments = return_alignments
        self.return_state = return_state
        residual = attention_output == "residual"
        self.output_size = attention_layer_size or units
        self.attention_layer = keras.layers.Dense(
            self.output_size,
            activation=None if residual else "tanh",
            use_bias=False,
            name="attention_layer",
            dtype=self.dtype_policy,
        )
        self.output_norm = None
        if residual:
            self.output_norm = keras.layers.LayerNormalization(
                name="output_norm", dtype=self.dtype_policy
            )
        self.supports_masking = True

    def build(self, inputs_shape, memory_shape):
        if len(inputs_shape) != 3 or len(memory_shape) != 3:
            raise ValueError(
                "`AttentionDecoder` expects `inputs` (B, T, e) and `memory` "
                f"(B, S, d). Received: inputs.shape={tuple(inputs_shape)}, "
                f"memory.shape={tuple(memory_shape)}"
            )
        feed = self.output_size if self.input_feeding else 0
        if not self.cell.built:
            self.cell.build((None, inputs_shape[-1] + feed))
        query_size = getattr(self.cell, "output_size", None) or self.units
        self._query_size = query_size
        self.attention.build((None, query_size), memory_shape)
        if self.output_norm is None:
            self.attention_layer.build((None, query_size + memory_shape[-1]))
        else:
            if self.output_size != query_size:
                raise ValueError(
                    "A `'residual'` `attention_output` has the cell's output "
                    f"size {query_size}. Received: attention_layer_size="
                    f"{self.attention_layer_size}"
                )
            self.attention_layer.build((None, memory_shape[-1]))
            self.output_norm.build((None, query_size))
        # The nesting of the cell state, to unflatten the decoder state.
        self._state_structure = keras.tree.map_structure(
            lambda _: 0, self._cell_state_template(1)
        )
        self.built = True

    def _cell_state_template(self, batch_size):
        if hasattr(self.cell, "get_initial_state"):
            return self.cell.get_initial_state(batch_size=batch_size)
        return keras.tree.map_structure(
            lambda size: ops.zeros((batch_size, size), self.compute_dtype),
            self.cell.state_size,
        )

    def get_initial_state(self, batch_size, cell_state=None):
        """Full decoder state (flat list) from an optional cell state."""
        template = self._cell_state_template(batch_size)
        flat = keras.tree.flatten(template)
        if cell_state is not None:
            cell_state = keras.tree.flatten(cell_state)
            if len(cell_state) == len(flat) + 1:
                return list(cell_state)  # already a full decoder state
            if len(cell_state) != len(flat):
                raise ValueError(
                    f"`initial_state` must hold {len(flat)} tensors (the "
                    f"cell's state) or {len(flat) + 1} (a decoder state). "
                    f"Received: {len(cell_state)} tensors"
                )
            flat = cell_state
        attention = ops.zeros(
            (batch_size, self.output_size), self.compute_dtype
        )
        return [ops.cast(s, self.compute_dtype) for s in flat] + [attention]

    def project_memory(self, memory):
        """The memory keys, computed once per source for `step`."""
        return self.attention.project_memory(memory)

    def step(
        self, inputs, state, memory, keys, memory_mask=None, training=None
    ):
        """One decoder step.

        Args:
            inputs: `(B, e)`, the embedded previous target token.
            state: the decoder state (flat list), from `get_initial_state`
                or a previous step.
            memory: `(B, S, d)`.
            keys: `project_memory(memory)`.
            memory_mask: optional bool `(B, S)`.
            training: passed to the cell.

        Returns:
            Tuple `(output (B, A), alignments (B, S), new_state)`.
        """
        cell_state = keras.tree.pack_sequence_as(
            self._state_structure, list(state[:-1])
        )
        if self.input_feeding:
            cell_inputs = ops.concatenate([inputs, state[-1]], axis=-1)
        else:  # a cell warns of an embedding's mask riding along
            cell_inputs = attention_ops.without_mask(inputs)
        query, cell_state = self.cell(
            cell_inputs, cell_state, training=training
        )
        context, alignments = self.attention.call(
            query, memory, memory_mask, keys
        )  # (B, d), (B, S)
        output = self._attentional_output(query, context)
        return output, alignments, keras.tree.flatten(cell_state) + [output]

    def _attentional_output(self, query, context):
        """`a_t` from the queries `h_t` and the contexts `c_t`."""
        if self.output_norm is None:
            return self.attention_layer(ops.concatenate([query, context], -1))
        return self.output_norm(query + self.attention_layer(context))

    def call(
        self,
        inputs,
        memory,
        memory_mask=None,
        initial_state=None,
        training=None,
    ):
        utils.check_shape("inputs", inputs, (None, None, None))
        _check_memory(memory, memory_mask, "inputs", inputs)
        memory = attention_ops.hide_unseen(memory, memory_mask)  # no NaN leak
        state = self.get_initial_state(ops.shape(inputs)[0], initial_state)
        keys = self.project_memory(memory)  # once per source, not per step
        steps = ops.swapaxes(inputs, 0, 1)  # (T, B, e): cheap to index
        run = self._run_fed if self.input_feeding else self._run_unfed
        outputs, alignments, state = run(
            steps, state, memory, keys, memory_mask, training
        )
        if not self.return_sequences:
            outputs = outputs[:, -1]
        return utils.pack_outputs(
            outputs,
            alignments if self.return_alignments else None,
            state if self.return_state else None,
        )

    def _run_fed(self, steps, state, memory, keys, memory_mask, training):
        """The recurrence with input feeding: `step` at every position."""
        length, batch = ops.shape(steps)[0], ops.shape(steps)[1]

        def body(index, carry):
            state, outputs, alignments = carry
            output, weights, state = self.step(
                ops.take(steps, index, axis=0),
                state,
                memory,
                keys,
                memory_mask,
                training,
            )
            outputs = _write(outputs, index, output)  # (B, T, A)
            alignments = _write(alignments, index, weights)  # (B, T, S)
            return state, outputs, alignments

        outputs = ops.zeros(
            (batch, length, self.output_size), self.compute_dtype
        )
        alignments = ops.zeros((batch, length, ops.shape(memory)[1]), "float32")
        state, outputs, alignments = utils.fori_loop(
            length, body, (state, outputs, alignments)
        )
        return outputs, alignments, state

    def _run_unfed(self, steps, state, memory, keys, memory_mask, training):
        """Without input feeding: the cell alone, then attention over all steps.

        Nothing feeds back, so all `T` queries attend at once (the same
        numbers as step by step, faster).
        """
        length, batch = ops.shape(steps)[0], ops.shape(steps)[1]

        def body(index, carry):
            state, queries = carry
            cell_state = keras.tree.pack_sequence_as(
                self._state_structure, list(state[:-1])
            )
            query, cell_state = self.cell(
                ops.take(steps, index, axis=0), cell_state, training=training
            )
            state = keras.tree.flatten(cell_state) + [state[-1]]
            return state, _write(queries, index, query)

        queries = ops.zeros(
            (batch, length, self._query_size), self.compute_dtype
        )
        state, queries = utils.fori_loop(length, body, (state, queries))
        context, alignments = self.attention.attend(
            queries, memory, keys, memory_mask
        )  # (B, T, d), (B, T, S)
        outputs = self._attentional_output(queries, context)  # (B, T, A)
        return outputs, alignments, state[:-1] + [outputs[:, -1]]

    def compute_mask(self, inputs, mask=None):
        if not self.return_sequences:
            return None
        if self.return_alignments or self.return_state:
            return None  # several outputs; mask only the simple case
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            attention=utils.serialize(self.attention),
            cell=utils.serialize(self.cell),
            attention_layer_size=self.attention_layer_size,
            attention_output=self.attention_output,
            input_feeding=self.input_feeding,
            return_sequences=self.return_sequences,
            return_alignments=self.return_alignments,
            return_state=self.return_state,
        )
        return config
