"""The Transformer encoder-decoder model, and the argument checks and stack
arguments it shares with `TransformerClassifier`."""

import keras
from keras import ops

from keras_attention import mods
from keras_attention import utils
from keras_attention.constants import PAD_ID
from keras_attention.layers.dropout import Dropout
from keras_attention.layers.kinds import ATTENTION_KINDS
from keras_attention.layers.kinds import serialize_options
from keras_attention.layers.masking import Unmasked
from keras_attention.layers.positional import TokenAndPositionEmbedding
from keras_attention.layers.positional import positional_scheme
from keras_attention.layers.stacks import TransformerDecoder
from keras_attention.layers.stacks import TransformerEncoder
from keras_attention.models.generation import Generator
from keras_attention.models.layouts import transformer_layout_map


def check_arguments(config, *int_names, choices=()):
    """Raise a `ValueError` naming the first bad constructor argument.

    `int_names` must be positive ints; `choices` is `(name, allowed)` pairs;
    `dropout` is a rate; `hidden_dim` must be divisible by `num_heads`; the
    positional scheme must be known and fit the head size and modifiers.
    """
    for name in int_names:
        utils.check_positive_int(name, config[name])
    utils.check_rate("dropout", config["dropout"])
    for name, allowed in choices:
        utils.check_choice(name, config[name], allowed)
    hidden_dim, num_heads = config["hidden_dim"], config["num_heads"]
    if hidden_dim % num_heads:
        raise ValueError(
            "`hidden_dim` must be divisible by `num_heads`. "
            f"Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
        )
    positional = config["positional"]
    scheme = positional_scheme(positional)
    if positional == "rotary":
        utils.check_even(
            "hidden_dim / num_heads", hidden_dim // num_heads,
            'positional="rotary" rotates pairs of head features',
        )  # fmt: skip
    config["score_mod"] = mods.serialize(
        mods.get(config["score_mod"], mods.ScoreMod)
    )
    config["mask_mod"] = mods.serialize(
        mods.get(config["mask_mod"], mods.MaskMod)
    )
    utils.check_choice("attention", config["attention"], tuple(ATTENTION_KINDS))
    if not isinstance(config["attention_options"] or {}, dict):
        raise ValueError(
            "`attention_options` must be a dict of the attention layer's "
            f"arguments. Received: {config['attention_options']!r}"
        )
    config["attention_options"] = serialize_options(
        config["attention_options"] or {}
    )
    if config["score_mod"] and "score_mod" in scheme.self_attention(False):
        raise ValueError(
            f"`score_mod` cannot be combined with positional={positional!r}, "
            "whose position bias is the score modifier. Received: "
            f"score_mod={config['score_mod']}, positional={positional!r}"
        )


def stack_arguments(config, causal):
    """Block arguments of one stack: sizes, the positional scheme's
    self-attention arguments and the modifiers (a fresh copy per stack)."""
    arguments = dict(
        num_heads=config["num_heads"],
        intermediate_dim=config["intermediate_dim"],
        dropout=config["dropout"],
        norm_first=config["norm_first"],
        score_mod=mods.get(config["score_mod"], mods.ScoreMod),
        mask_mod=mods.get(config["mask_mod"], mods.MaskMod),
    )
    scheme = positional_scheme(config["positional"])
    return {
        **arguments,
        **scheme.self_attention(causal),
        "attention": config["attention"],
        "attention_options": config["attention_options"],
    }


class _TransformerParts:
    """The named parts of a `Transformer` and how data flows through them.

    embeddings → encoder stack → decoder stack (causal self-attention and
    cross-attention) → logits head.
    """

    def __init__(self, config, dtype):
        scheme = positional_scheme(config["positional"])

        # === Embeddings (√d-scaled tokens + positions, id 0 = padding) ===
        def embedding(side):
            return TokenAndPositionEmbedding(
                config[f"{side}_vocab_size"],
                config["hidden_dim"],
                max_length=config["max_length"],
                positional=scheme.embedding,
                name=f"{side}_embedding",
                dtype=dtype,
            )

        self.source_embedding = embedding("source")
        self.target_embedding = self.source_embedding
        if not config["share_embeddings"]:
            self.target_embedding = embedding("target")
        # === Encoder and decoder stacks ===
        layers = config["num_layers"]
        self.encoder = TransformerEncoder(
            layers, name="encoder", dtype=dtype,
            **stack_arguments(config, causal=False),
        )  # fmt: skip
        self.decoder = TransformerDecoder(
            layers, name="decoder", dtype=dtype,
            **stack_arguments(config, causal=True),
        )  # fmt: skip
        # === Head ===
        self.dropout = Dropout(config["dropout"], name="dropout", dtype=dtype)
        self.logits = keras.layers.Dense(
            config["target_vocab_size"], name="logits", dtype=dtype
        )

    def encode(self, source):
        """Memory `(B, S, d)`."""
        return self.encoder(self.dropout(self.source_embedding(source)))

    def decode(self, target_in, memory, memory_mask=None):
        """Logits `(B, T, V)` and attention `(B, T, S)`.

        The attention is the last block's cross-attention averaged over
        heads. (Every call of the decoder stack returns the weights: a
        Keras functional graph needs one output structure per layer.)
        """
        x = self.dropout(self.target_embedding(target_in))
        x, weights = self.decoder(
            x,
            memory,
            encoder_outputs_mask=memory_mask,
            return_attention_scores=True,
        )
        cross = weights[-1]["cross_attention"]  # (B, H, T, S)
        return self.logits(x), ops.mean(cross, axis=1)


@keras.saving.register_keras_serializable(package="keras_attention")
class Transformer(Generator, keras.Model):
    r"""Encoder-decoder Transformer ("Attention Is All You Need").

    Source and target tokens are embedded ($\sqrt{d}$-scaled, plus sinusoidal or
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
        positional: where positions enter: `"sinusoidal"` or `"learned"`
            (added to the embeddings), `"rotary"` (RoPE of queries and
            keys), `"alibi"` (`mods.ALiBi`) or `"t5"` (a learned
            `mods.RelativePositionBias` per stack, causal in the decoder),
            the last three in self-attention only. Defaults to
            `"sinusoidal"`.
        share_embeddings: one embedding for source and target (and the
            logits' weights stay separate); needs equal vocabulary sizes.
            Defaults to `False`.
        score_mod: optional `keras_attention.mods.ScoreMod` of every
            block's self-attention (e.g. `mods.SoftCap(50.0)`); not with
            `positional="alibi"` or `"t5"`, whose bias is the score
            modifier. Defaults to `None`.
        mask_mod: optional `keras_attention.mods.MaskMod` of every block's
            self-attention (e.g. `mods.SlidingWindow(64)`). Defaults to
            `None`.
        attention: every block's self-attention: `"multi_head"`,
            `"latent"` (decodes with the small latent cache),
            `"differential"` or `"linear"` (see
            `TransformerEncoderBlock`); cross-attention stays multi-head.
            Defaults to `"multi_head"`.
        attention_options: dict of that layer's own arguments, e.g.
            `{"kv_latent_dim": 64, "rotary_dim": 16}` or
            `{"use_sinks": True, "qk_norm": "rms"}`. Defaults to `None`.
        **kwargs: `name`, `trainable`; any other keyword is a
            `ValueError`.

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
        score_mod=None,
        mask_mod=None,
        attention="multi_head",
        attention_options=None,
        dtype=None,
        **kwargs,
    ):
        utils.check_no_unknown_kwargs(kwargs)
        if share_embeddings and source_vocab_size != target_vocab_size:
            raise ValueError(
                "`share_embeddings=True` needs equal vocabulary sizes. "
                f"Received: source_vocab_size={source_vocab_size}, "
                f"target_vocab_size={target_vocab_size}"
            )
        config = {
            "source_vocab_size": source_vocab_size,
            "target_vocab_size": target_vocab_size,
            "num_layers": num_layers,
            "hidden_dim": hidden_dim,
            "num_heads": num_heads,
            "intermediate_dim": intermediate_dim,
            "dropout": dropout,
            "max_length": max_length,
            "norm_first": norm_first,
            "positional": positional,
            "share_embeddings": share_embeddings,
            "score_mod": score_mod,
            "mask_mod": mask_mod,
            "attention": attention,
            "attention_options": attention_options,
        }
        check_arguments(
            config,
            "source_vocab_size",
            "target_vocab_size",
            "num_layers",
            "hidden_dim",
            "num_heads",
            "intermediate_dim",
            "max_length",
            choices=(
                ("norm_first", (True, False)),
                ("share_embeddings", (True, False)),
            ),
        )
        dtype = utils.dtype_policy(dtype)
        parts = _TransformerParts(config, dtype)

        # === Functional model ===
        source = keras.Input((None,), dtype="int32", name="source")
        target_in = keras.Input((None,), dtype="int32", name="target_in")
        logits, _ = parts.decode(target_in, parts.encode(source))
        super().__init__(
            inputs={"source": source, "target_in": target_in},
            outputs=logits,
            dtype=dtype,
            **kwargs,
        )

        # === Config and parts ===
        self._keep(config, parts, dtype)
        self.decoder_stack = parts.decoder

    def _sub_models(self):
        """Functional `encoder` and `decoder` sharing the model's weights."""
        parts, dtype = self._parts, self._built_dtype
        source = keras.Input((None,), dtype="int32", name="source")
        encoder = keras.Model(
            source,
            Unmasked(dtype=dtype)(parts.encode(source)),
            name="encoder",
            dtype=dtype,
        )
        inputs = {
            "target_in": keras.Input((None,), dtype="int32", name="target_in"),
            "memory": keras.Input((None, self.hidden_dim), name="memory"),
            "memory_mask": keras.Input(
                (None,), dtype="bool", name="memory_mask"
            ),
        }
        logits, attention = parts.decode(
            inputs["target_in"], inputs["memory"], inputs["memory_mask"]
        )
        decoder = keras.Model(
            inputs,
            {"logits": logits, "attention": attention},
            name="decoder",
            dtype=dtype,
        )
        return encoder, decoder

    get_layout_map = staticmethod(transformer_layout_map)

    # === Generation (see `Generator`) ===

    @property
    def max_positions(self):
        """The longest source or target sequence (`max_length`)."""
        return self.max_length

    def check_lengths(self, max_length, source_length=None):
        scheme = positional_scheme(self.positional)
        if scheme.limits_target and max_length > self.max_length:
            raise ValueError(
                "Invalid value for argument `max_length`: cannot generate "
                "more tokens than the model's learned positions. Received: "
                f"max_length={max_length}, model max_length={self.max_length}"
            )
        if scheme.limits_source and (source_length or 0) > self.max_length:
            raise ValueError(
                "Invalid source length (`source_length`, the length of "
                "`source`): longer than the model's positions. Received: "
                f"source_length={source_length}, model "
                f"max_length={self.max_length}"
            )

    def decoding_state(self, source, max_length):
        memory = self._parts.encode(source)  # (B, S, d)
        # One self-attention cache per block (the decoding contract's
        # `initial_cache`), and the source's cross-attention keys/values
        # projected once.
        batch_size = ops.shape(source)[0]
        return {
            "memory": memory,
            "memory_mask": ops.not_equal(source, PAD_ID),
            "cache": self.decoder_stack.initial_cache(batch_size, max_length),
            "cross_attention_cache": (
                self.decoder_stack.compute_cross_attention_cache(memory)
            ),
        }

    def decoding_step(self, tokens, state, index):
        x = self.target_embedding(ops.expand_dims(tokens, 1), start_index=index)
        hidden, weights, cache = self.decoder_stack(
            x,
            state["memory"],
            encoder_outputs_mask=state["memory_mask"],
            cache=state["cache"],
            cache_update_index=index,
            cross_attention_cache=state["cross_attention_cache"],
            return_attention_scores=True,
        )  # (B, 1, d)
        logits = self.logits_layer(hidden[:, 0])  # (B, V)
        # Alignments: the last block's cross-attention, averaged over heads.
        alignments = ops.mean(weights[-1]["cross_attention"][:, :, 0], axis=1)
        return logits, {**state, "cache": cache}, alignments

    def teacher_forced_alignments(self, state, target_in):
        _, attention = self._parts.decode(
            target_in, state["memory"], state["memory_mask"]
        )
        return attention
