"""Attention pictures: alignment heatmaps, head grids, positional encodings,
the interactive explorer page (`attention_html`, from
`keras_attention.explorer`) and the collector of a model's weights
(`attention_weights`).

Needs matplotlib (`pip install keras-attention[viz]`). Every function returns
a `matplotlib.figure.Figure` and never calls `show()`: save it with
`fig.savefig(path)` or display it in a notebook.
"""

import numpy as np

from keras_attention.constants import PAD_ID
from keras_attention.explorer import attention_html  # noqa: F401 (public)


def _pyplot():
    try:
        from matplotlib import pyplot
    except ImportError as error:  # pragma: no cover - depends on the extra
        raise ImportError(
            "keras_attention.visualization needs matplotlib: "
            "pip install 'keras-attention[viz]'"
        ) from error
    return pyplot


def _as_matrix(weights, name, rank):
    weights = np.asarray(weights, dtype="float32")
    if weights.ndim != rank:
        shape = "(Tq, Tk)" if rank == 2 else "(H, Tq, Tk)"
        raise ValueError(
            f"`{name}` must be {shape} (select one example of the batch "
            f"first). Received: {name}.shape={weights.shape}"
        )
    return weights


def _check_labels(labels, size, name):
    if labels is not None and len(labels) != size:
        raise ValueError(
            f"`{name}` must have one label per row/column ({size}). "
            f"Received: {len(labels)} labels"
        )


def _draw(ax, weights, source_tokens, target_tokens, title, vmax=None):
    image = ax.imshow(
        weights, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto"
    )
    small = max(weights.shape) <= 40
    if source_tokens is not None:
        ax.set_xticks(range(len(source_tokens)))
        ax.set_xticklabels(
            source_tokens, rotation=90, fontsize=9 if small else 6
        )
    if target_tokens is not None:
        ax.set_yticks(range(len(target_tokens)))
        ax.set_yticklabels(target_tokens, fontsize=9 if small else 6)
    if title:
        ax.set_title(title)
    return image


def plot_attention(
    weights,
    source_tokens=None,
    target_tokens=None,
    title="Attention weights",
    ax=None,
):
    """Alignment heatmap: which source token each target token attends to.

    Rows are target (query) positions, columns source (key) positions, as in
    Bahdanau et al. 2015, Fig. 3; each row sums to 1.

    Args:
        weights: `(Tq, Tk)` attention weights of one example.
        source_tokens: optional `Tk` labels for the columns (keys).
        target_tokens: optional `Tq` labels for the rows (queries).
        title: the axes title. Defaults to `"Attention weights"`.
        ax: optional matplotlib axes to draw into.

    Returns:
        The matplotlib `Figure`.

    Examples:
        >>> fig = plot_attention(
        ...     [[0.9, 0.1], [0.2, 0.8]], ["he", "hit"], ["il", "a"]
        ... )
        >>> fig.axes[0].get_xlabel()
        'source (keys)'
    """
    weights = _as_matrix(weights, "weights", 2)
    _check_labels(source_tokens, weights.shape[1], "source_tokens")
    _check_labels(target_tokens, weights.shape[0], "target_tokens")
    if ax is None:
        plt = _pyplot()
        width = min(14.0, 3.0 + 0.35 * weights.shape[1])
        height = min(12.0, 2.5 + 0.35 * weights.shape[0])
        fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    else:
        fig = ax.figure
    image = _draw(ax, weights, source_tokens, target_tokens, title)
    ax.set_xlabel("source (keys)")
    ax.set_ylabel("target (queries)")
    fig.colorbar(image, ax=ax, label="attention weight")
    return fig


def plot_heads(weights, tokens=None, target_tokens=None, ncols=4, title=None):
    """One heatmap per head, for self-attention patterns.

    Args:
        weights: `(H, Tq, Tk)` attention weights of one example.
        tokens: optional `Tk` labels of the keys (also used for the rows of a
            self-attention map when `target_tokens` is `None` and `Tq == Tk`).
        target_tokens: optional `Tq` labels of the queries.
        ncols: panels per row. Defaults to `4`.
        title: optional figure title.

    Returns:
        The matplotlib `Figure`, with one axes per head plus a colorbar.

    Examples:
        >>> import numpy as np
        >>> fig = plot_heads(np.full((2, 3, 3), 1 / 3))
        >>> len(fig.axes)  # two heads and a colorbar
        3
    """
    weights = _as_matrix(weights, "weights", 3)
    num_heads, query_length, key_length = weights.shape
    if target_tokens is None and tokens is not None:
        target_tokens = tokens if query_length == key_length else None
    _check_labels(tokens, key_length, "tokens")
    _check_labels(target_tokens, query_length, "target_tokens")
    plt = _pyplot()
    ncols = max(1, min(ncols, num_heads))
    nrows = -(-num_heads // ncols)
    side = min(4.0, 1.5 + 0.25 * key_length)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(side * ncols + 1.0, side * nrows + 0.6),
        layout="constrained",
        squeeze=False,
    )
    vmax = float(weights.max()) or 1.0
    for ax in axes.flat[num_heads:]:
        ax.remove()  # empty panels of the last row
    axes = axes.flat[:num_heads]
    for head, ax in enumerate(axes):
        image = _draw(
            ax, weights[head], tokens, target_tokens, f"head {head}", vmax
        )
        ax.set_xlabel("keys")
        ax.set_ylabel("queries")
    fig.colorbar(image, ax=list(axes), label="attention weight", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def plot_positional_encoding(encoding, title="Sinusoidal positional encoding"):
    """Heatmap of a positional encoding, positions by dimensions.

    Args:
        encoding: `(T, D)` encoding values, e.g.
            `SinusoidalPositionalEncoding()(np.zeros((1, T, D)))[0]`.
        title: the axes title.

    Returns:
        The matplotlib `Figure`.

    Examples:
        >>> import numpy as np
        >>> fig = plot_positional_encoding(np.zeros((8, 4)))
        >>> fig.axes[0].get_ylabel()
        'position'
    """
    encoding = _as_matrix(encoding, "encoding", 2)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    image = ax.imshow(encoding, cmap="RdBu", aspect="auto", vmin=-1, vmax=1)
    ax.set_xlabel("embedding dimension")
    ax.set_ylabel("position")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="value")
    return fig


def attention_weights(model, inputs):
    """Every attention layer's weights for one batch, by readable name.

    Runs the model's own layers on `inputs` (no second implementation of
    attention) and returns what each attention layer weighed:

    - `Transformer`: `encoder/block_{i}/self_attention` `(B, H, S, S)`,
      `decoder/block_{i}/self_attention` `(B, H, T, T)` and
      `decoder/block_{i}/cross_attention` `(B, H, T, S)`;
    - `Seq2Seq`: `decoder/alignments` `(B, 1, T, S)`, the decoder's
      attention at each target step;
    - `TransformerClassifier`: `encoder/block_{i}/self_attention`
      `(B, H, T, T)` (with the `[CLS]` position first for
      `pooling="cls"`) and, for `pooling="attention"`, `pooling`
      `(B, 1, 1, T)`.

    Layers that keep no weights (`LinearAttention`) are left out.

    Args:
        model: a `Transformer`, `Seq2Seq` or `TransformerClassifier`.
        inputs: what the model takes: `{"source", "target_in"}` token ids
            for the encoder-decoders, token ids `(B, T)` for the
            classifier.

    Returns:
        A dict `{name: float32 NumPy (B, H, Tq, Tk)}`, in the model's
        order; pick one example (`w[0]`) for `attention_html`.

    Example:
        >>> from keras_attention.models import Transformer
        >>> model = Transformer(20, 20, num_layers=1, hidden_dim=8,
        ...                     num_heads=2, intermediate_dim=8)
        >>> inputs = {"source": np.array([[4, 5, 6]]),
        ...           "target_in": np.array([[1, 7]])}
        >>> for name, w in attention_weights(model, inputs).items():
        ...     print(name, w.shape)
        encoder/block_0/self_attention (1, 2, 3, 3)
        decoder/block_0/self_attention (1, 2, 2, 2)
        decoder/block_0/cross_attention (1, 2, 2, 3)
    """
    from keras_attention import models

    if isinstance(model, models.Transformer):
        named = _transformer_weights(model, inputs)
    elif isinstance(model, models.Seq2Seq):
        named = _seq2seq_weights(model, inputs)
    elif isinstance(model, models.TransformerClassifier):
        named = _classifier_weights(model, inputs)
    else:
        raise ValueError(
            "`model` must be a Transformer, Seq2Seq or TransformerClassifier "
            "(for a layer, call it with `return_attention_scores=True`). "
            f"Received: model={type(model).__name__}"
        )
    return {
        name: _batch_of_heads(weights)
        for name, weights in named.items()
        if weights is not None
    }


def _batch_of_heads(weights):
    """float32 NumPy `(B, H, Tq, Tk)` of a layer's weights."""
    from keras import ops

    weights = np.asarray(ops.convert_to_numpy(weights), dtype="float32")
    while weights.ndim < 4:  # (B, Tq, Tk) or (B, Tk): one head, one query
        weights = np.expand_dims(weights, 1)
    return weights


def _checked_ids(inputs, name, vocab_size):
    """`inputs[name]` as int32 token ids, checked as the models check them
    (a `ValueError` naming `name`)."""
    from keras import ops

    from keras_attention.models.generation import check_inputs

    check_inputs(inputs, **{name: vocab_size})
    return ops.cast(ops.convert_to_tensor(inputs[name]), "int32")


def _stack_weights(prefix, weights):
    """`{prefix/block_i/kind: w}` of a stack's per-block weights."""
    named = {}
    for index, block in enumerate(weights):
        if not isinstance(block, dict):
            block = {"self_attention": block}
        for kind, value in block.items():
            named[f"{prefix}/block_{index}/{kind}"] = value
    return named


def _transformer_weights(model, inputs):
    from keras import ops

    source = _checked_ids(inputs, "source", model.source_vocab_size)
    target_in = _checked_ids(inputs, "target_in", model.target_vocab_size)
    parts = model._parts
    source_mask = ops.not_equal(source, PAD_ID)
    target_mask = ops.not_equal(target_in, PAD_ID)
    memory, encoder = parts.encoder(
        parts.source_embedding(source),
        mask=source_mask,
        return_attention_scores=True,
    )
    _, decoder = parts.decoder(
        parts.target_embedding(target_in),
        memory,
        mask=target_mask,
        encoder_outputs_mask=source_mask,
        return_attention_scores=True,
    )
    return {
        **_stack_weights("encoder", encoder),
        **_stack_weights("decoder", decoder),
    }


def _seq2seq_weights(model, inputs):
    source = _checked_ids(inputs, "source", model.source_vocab_size)
    target_in = _checked_ids(inputs, "target_in", model.target_vocab_size)
    state = model.decoding_state(source, target_in.shape[1])
    alignments = model.teacher_forced_alignments(state, target_in)
    return {"decoder/alignments": alignments}


def _classifier_weights(model, inputs):
    import keras
    from keras import ops

    tokens = _checked_ids({"tokens": inputs}, "tokens", model.vocab_size)
    embedded = keras.Model(model.input, model.get_layer("dropout").output)
    if model.pooling == "cls":  # the encoder sees [CLS] first
        tokens = model.get_layer("prepend_cls")(tokens)
    mask = ops.not_equal(tokens, PAD_ID)
    hidden, encoder = model.get_layer("encoder")(
        embedded(inputs), mask=mask, return_attention_scores=True
    )
    named = _stack_weights("encoder", encoder)
    if model.pooling == "attention":
        _, named["pooling"] = model.get_layer("pooling")(
            hidden, mask=mask, return_attention_scores=True
        )
    return named
