"""Transformer encoder-decoder and Transformer text classifier models."""

import keras
from keras import ops

from keras_attention.layers.attention import AttentionPooling
from keras_attention.layers.positional import TokenAndPositionEmbedding
from keras_attention.layers.transformer import TransformerDecoder
from keras_attention.layers.transformer import TransformerEncoder
from keras_attention.models.generation import END_ID
from keras_attention.models.generation import PAD_ID
from keras_attention.models.generation import START_ID
from keras_attention.models.generation import Unmasked
from keras_attention.models.generation import compile_generate
from keras_attention.models.generation import next_token_logits
from keras_attention.models.generation import run_decoding


def _check_heads(hidden_dim, num_heads):
    if hidden_dim % num_heads:
        raise ValueError(
            "`hidden_dim` must be divisible by `num_heads`. "
            f"Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
        )


@keras.saving.register_keras_serializable(package="keras_attention")
class Transformer(keras.Model):
    """Encoder-decoder Transformer ("Attention Is All You Need").

    Source and target tokens are embedded (`√d`-scaled, plus sinusoidal or
    learned positions, id 0 = padding), the encoder stack reads the source,
    the decoder stack reads the target shifted right with causal
    self-attention and cross-attention over the encoder outputs, and a dense
    layer gives the logits. Pre-norm by default.

    A functional `keras.Model`: `compile()`, `fit()`, `evaluate()`,
    `save()`/`keras.models.load_model` and `export()` work as usual.
    `encoder` and `decoder` are functional sub-models sharing the weights;
    `generate` decodes with a key/value cache (one new token per step).

    Args:
        source_vocab_size: source vocabulary size.
        target_vocab_size: target vocabulary size `V`.
        num_layers: encoder and decoder blocks. Defaults to `2`.
        hidden_dim: model width `d`. Defaults to `128`.
        num_heads: attention heads `H` (`d` divisible by `H`). Defaults to
            `4`.
        intermediate_dim: feed-forward width. Defaults to `512`.
        dropout: dropout rate. Defaults to `0.1`.
        max_length: longest source or target sequence. Defaults to `256`.
        norm_first: pre-norm (`True`) or post-norm blocks. Defaults to
            `True`.
        positional: `"sinusoidal"` or `"learned"`. Defaults to
            `"sinusoidal"`.
        share_embeddings: one embedding for source and target (and the
            logits' weights stay separate); needs equal vocabulary sizes.
            Defaults to `False`.

    Call arguments:
        inputs: dict with `"source"` int `(B, S)` and `"target_in"` int
            `(B, T)` (target shifted right, starting with id 1).

    Returns:
        Logits `(B, T, V)`.

    Examples:
        >>> import numpy as np
        >>> model = Transformer(20, 30, num_layers=1, hidden_dim=8,
        ...                     num_heads=2, intermediate_dim=16)
        >>> inputs = {"source": np.ones((2, 5)), "target_in": np.ones((2, 3))}
        >>> tuple(model(inputs).shape)
        (2, 3, 30)

    Reference:
        Vaswani et al., 2017, "Attention Is All You Need".
    """

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        num_layers=2,
        hidden_dim=128,
        num_heads=4,
        intermediate_dim=512,
        dropout=0.1,
        max_length=256,
        norm_first=True,
        positional="sinusoidal",
        share_embeddings=False,
        dtype=None,
        **kwargs,
    ):
        _check_heads(hidden_dim, num_heads)
        if share_embeddings and source_vocab_size != target_vocab_size:
            raise ValueError(
                "`share_embeddings=True` needs equal vocabulary sizes. "
                f"Received: source_vocab_size={source_vocab_size}, "
                f"target_vocab_size={target_vocab_size}"
            )

        # === Layers ===
        def embedding(vocab_size, name):
            return TokenAndPositionEmbedding(
                vocab_size,
                hidden_dim,
                max_length=max_length,
                positional=positional,
                name=name,
                dtype=dtype,
            )

        source_embedding = embedding(source_vocab_size, "source_embedding")
        target_embedding = source_embedding
        if not share_embeddings:
            target_embedding = embedding(target_vocab_size, "target_embedding")
        blocks = dict(
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            norm_first=norm_first,
            dtype=dtype,
        )
        encoder_stack = TransformerEncoder(num_layers, name="encoder", **blocks)
        decoder_stack = TransformerDecoder(num_layers, name="decoder", **blocks)
        dropout_layer = keras.layers.Dropout(dropout, name="dropout")
        logits_layer = keras.layers.Dense(
            target_vocab_size, name="logits", dtype=dtype
        )

        def encode(source):
            return encoder_stack(dropout_layer(source_embedding(source)))

        def decode(target_in, memory, memory_mask=None, scores=False):
            x = dropout_layer(target_embedding(target_in))
            x = decoder_stack(
                x,
                memory,
                encoder_outputs_mask=memory_mask,
                return_attention_scores=scores,
            )
            x, weights = x if scores else (x, None)
            logits = logits_layer(x)
            if not scores:
                return logits
            # Cross-attention of the last block, averaged over heads.
            cross = weights[-1]["cross_attention"]  # (B, H, T, S)
            return logits, ops.mean(cross, axis=1)  # (B, T, S)

        # === Functional model ===
        source = keras.Input((None,), dtype="int32", name="source")
        target_in = keras.Input((None,), dtype="int32", name="target_in")
        # Every call of the decoder stack returns the attention weights too:
        # a Keras functional graph needs one output structure per layer.
        logits, _ = decode(target_in, encode(source), scores=True)
        super().__init__(
            inputs={"source": source, "target_in": target_in},
            outputs=logits,
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.max_length = max_length
        self.norm_first = norm_first
        self.positional = positional
        self.share_embeddings = share_embeddings
        self.source_embedding = source_embedding
        self.target_embedding = target_embedding
        self.decoder_stack = decoder_stack
        self.logits_layer = logits_layer
        self._encode = encode
        self._decode = decode

        # === Sub-models (shared weights) ===
        source = keras.Input((None,), dtype="int32", name="source")
        self.encoder = keras.Model(
            source, Unmasked()(encode(source)), name="encoder"
        )
        decoder_inputs = {
            "target_in": keras.Input((None,), dtype="int32", name="target_in"),
            "memory": keras.Input((None, hidden_dim), name="memory"),
            "memory_mask": keras.Input(
                (None,), dtype="bool", name="memory_mask"
            ),
        }
        logits, attention = decode(
            decoder_inputs["target_in"],
            decoder_inputs["memory"],
            decoder_inputs["memory_mask"],
            scores=True,
        )
        self.decoder = keras.Model(
            decoder_inputs,
            {"logits": logits, "attention": attention},
            name="decoder",
        )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "max_length": self.max_length,
            "norm_first": self.norm_first,
            "positional": self.positional,
            "share_embeddings": self.share_embeddings,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _check_length(self, max_length):
        if self.positional == "learned" and max_length > self.max_length:
            raise ValueError(
                "Cannot generate more tokens than the model's learned "
                f"positions. Received: max_length={max_length}, model "
                f"max_length={self.max_length}"
            )

    def _step_fn(self, use_cache, max_length):
        """`step_fn(tokens, state, index)` over the decoder stack."""

        def logits_of(hidden):
            return next_token_logits(self.logits_layer, hidden)  # (B, V)

        def cached_step(tokens, state, index):
            x = self.target_embedding(tokens[:, None], start_index=index)
            hidden, cache = self.decoder_stack(
                x,
                state["memory"],
                encoder_outputs_mask=state["memory_mask"],
                cache=state["cache"],
                cache_update_index=index,
                cross_attention_cache=state["cross_attention_cache"],
            )  # (B, 1, d)
            return logits_of(hidden[:, 0]), {**state, "cache": cache}

        def uncached_step(tokens, state, index):
            # Write the token, then re-run the whole (causal) prefix.
            prefix = ops.slice_update(
                state["prefix"], (0, index), tokens[:, None]
            )  # (B, L)
            hidden = self.decoder_stack(
                self.target_embedding(prefix),
                state["memory"],
                encoder_outputs_mask=state["memory_mask"],
            )  # (B, L, d)
            hidden = ops.take(hidden, index, axis=1)  # (B, d)
            return logits_of(hidden), {**state, "prefix": prefix}

        return cached_step if use_cache else uncached_step

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
        use_cache=True,
    ):
        """`generate` as plain `keras.ops`, to trace, compile or export."""
        self._check_length(max_length)
        source = ops.cast(source, "int32")
        batch = ops.shape(source)[0]
        memory = self._encode(source)  # (B, S, d)
        state = {"memory": memory, "memory_mask": ops.not_equal(source, 0)}
        if use_cache:
            # One self-attention cache per block (a list, so no step copies
            # a stacked cache), and the source's cross-attention keys/values
            # projected once.
            head_dim = self.hidden_dim // self.num_heads
            shape = (batch, 2, max_length, self.num_heads, head_dim)
            state["cache"] = [
                ops.zeros(shape, dtype=memory.dtype)
                for _ in range(self.num_layers)
            ]
            state["cross_attention_cache"] = (
                self.decoder_stack.compute_cross_attention_cache(memory)
            )
        else:
            state["prefix"] = ops.zeros((batch, max_length), "int32")
        start = ops.full((batch,), START_ID, "int32")
        tokens = run_decoding(
            method,
            self._step_fn(use_cache, max_length),
            state,
            start,
            max_length,
            end_id=END_ID,
            pad_id=PAD_ID,
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
        # Attention of the chosen tokens: one teacher-forced pass.
        target_in = ops.concatenate([start[:, None], tokens[:, :-1]], axis=1)
        _, attention = self._decode(
            target_in, memory, state["memory_mask"], scores=True
        )
        emitted = ops.not_equal(tokens, PAD_ID)[:, :, None]
        return tokens, ops.where(emitted, attention, 0.0)

    def generate(self, source, max_length, **kwargs):
        """Generate target ids with the key/value cache.

        Args:
            source: int `(B, S)`, padded with 0.
            max_length: number of target tokens generated.
            **kwargs: `method` (`"greedy"`, `"beam"`, `"sample"`),
                `beam_width`, `length_penalty`, `coverage_penalty`,
                `temperature`, `top_k`, `top_p`, `seed`, `return_attention`
                as in `Seq2Seq.generate`, and `use_cache` (default `True`;
                `False` recomputes the prefix each step, for comparison).

        Returns:
            int32 tokens `(B, max_length)` (0 after the end token 2), and
            the last block's head-averaged cross-attention
            `(B, max_length, S)` if `return_attention`.
        """
        return compile_generate(self, source, max_length, **kwargs)


@keras.saving.register_keras_serializable(package="keras_attention")
class PrependStart(keras.layers.Layer):
    """Prepend the start id (1) to int `(B, T)` ids: `(B, T + 1)`."""

    def call(self, inputs):
        return ops.pad(inputs, ((0, 0), (1, 0)), constant_values=START_ID)

    def compute_output_shape(self, inputs_shape):
        length = inputs_shape[1]
        return (inputs_shape[0], None if length is None else length + 1)


@keras.saving.register_keras_serializable(package="keras_attention")
class FirstToken(keras.layers.Layer):
    """`(B, T, d) -> (B, d)`: the output at the prepended start token."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return inputs[:, 0]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, inputs_shape):
        return (inputs_shape[0], inputs_shape[-1])


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerClassifier(keras.Model):
    """Transformer encoder over tokens, pooled to a vector, then classes.

    Pooling: `"cls"` prepends a start token (id 1) whose output represents
    the sequence (BERT); `"mean"` averages the unpadded outputs;
    `"attention"` uses `AttentionPooling`, a learned query whose weights
    show which tokens decided.

    Args:
        vocab_size: vocabulary size (id 0 = padding).
        num_classes: number of classes.
        num_layers: encoder blocks. Defaults to `2`.
        hidden_dim: model width. Defaults to `128`.
        num_heads: attention heads. Defaults to `4`.
        intermediate_dim: feed-forward width. Defaults to `512`.
        dropout: dropout rate. Defaults to `0.1`.
        max_length: longest sequence. Defaults to `512`.
        pooling: `"cls"`, `"mean"` or `"attention"`. Defaults to `"cls"`.
        norm_first: pre-norm blocks. Defaults to `True`.

    Call arguments:
        inputs: int `(B, T)` token ids.

    Returns:
        Logits `(B, num_classes)`.

    Examples:
        >>> import numpy as np
        >>> model = TransformerClassifier(20, 3, num_layers=1, hidden_dim=8,
        ...                               num_heads=2, intermediate_dim=16)
        >>> tuple(model(np.ones((2, 5))).shape)
        (2, 3)
    """

    poolings = ("cls", "mean", "attention")

    def __init__(
        self,
        vocab_size,
        num_classes,
        num_layers=2,
        hidden_dim=128,
        num_heads=4,
        intermediate_dim=512,
        dropout=0.1,
        max_length=512,
        pooling="cls",
        norm_first=True,
        dtype=None,
        **kwargs,
    ):
        _check_heads(hidden_dim, num_heads)
        if pooling not in self.poolings:
            raise ValueError(
                f"`pooling` must be one of {self.poolings}. "
                f"Received: {pooling=}"
            )
        tokens = keras.Input((None,), dtype="int32", name="tokens")
        x = tokens
        if pooling == "cls":
            x = PrependStart(name="prepend_cls")(x)
        x = TokenAndPositionEmbedding(
            vocab_size,
            hidden_dim,
            max_length=max_length,
            name="embedding",
            dtype=dtype,
        )(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
        x = TransformerEncoder(
            num_layers,
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            norm_first=norm_first,
            name="encoder",
            dtype=dtype,
        )(x)
        if pooling == "cls":
            x = FirstToken(name="pooling")(x)
        elif pooling == "mean":
            x = keras.layers.GlobalAveragePooling1D(name="pooling")(x)
        else:
            x = AttentionPooling(name="pooling", dtype=dtype)(x)
        logits = keras.layers.Dense(num_classes, name="logits", dtype=dtype)(x)
        super().__init__(tokens, logits, dtype=dtype, **kwargs)
        self.vocab_size = vocab_size
        self.num_classes = num_classes
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.max_length = max_length
        self.pooling = pooling
        self.norm_first = norm_first

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocab_size": self.vocab_size,
            "num_classes": self.num_classes,
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "max_length": self.max_length,
            "pooling": self.pooling,
            "norm_first": self.norm_first,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def pooling_weights(self, tokens):
        """Attention-pooling weights `(B, T)` (only for `"attention"`)."""
        if self.pooling != "attention":
            raise ValueError(
                "`pooling_weights` needs `pooling='attention'`. "
                f"Received: pooling={self.pooling!r}"
            )
        pooling = self.get_layer("pooling")
        encoder = self.get_layer("encoder")
        hidden = keras.Model(self.input, encoder.output)(tokens)
        mask = ops.not_equal(ops.convert_to_tensor(tokens), 0)
        _, weights = pooling(hidden, mask=mask, return_attention_scores=True)
        return weights
