"""Stacks of Transformer blocks: `TransformerEncoder`, `TransformerDecoder`."""

import keras

from keras_attention import mods
from keras_attention import utils
from keras_attention.layers.transformer import TransformerDecoderBlock
from keras_attention.layers.transformer import TransformerEncoderBlock


def _block_arguments(kwargs, index):
    """Block `index`'s arguments: differential attention's `layer_index`
    is the block's depth (1-based) unless the options set it."""
    options = dict(kwargs.get("attention_options") or {})
    if kwargs.get("attention") == "differential":
        options.setdefault("layer_index", index + 1)
    return {**kwargs, "attention_options": options}


def _stack_config(layer):
    config = layer.blocks[0].get_config()
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    # The stack's own options, not block 0's (its layer_index).
    own = layer._attention_options or {}
    config["attention_options"] = {
        k: v for k, v in config["attention_options"].items() if k in own
    }
    return config


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerEncoder(keras.layers.Layer):
    """A stack of `num_layers` `TransformerEncoderBlock`s.

    With `norm_first=True` a final layer norm follows the stack (as in
    pre-norm Transformers).

    Args:
        num_layers: number of blocks.
        **kwargs: arguments of `TransformerEncoderBlock` (and of `Layer`).

    Call arguments:
        inputs: `(B, T, d)`.
        mask: optional bool `(B, T)`.
        return_attention_scores: whether to also return a list of weights
            `(B, H, T, T)`, one per block.
        training: whether dropout is active.
        segment_ids: optional int `(B, T)` for a `mods.DocumentMask`.

    Returns:
        `(B, T, d)`, and the list of weights if `return_attention_scores`.

    Examples:
        >>> import numpy as np
        >>> encoder = TransformerEncoder(2, num_heads=2, intermediate_dim=16)
        >>> tuple(encoder(np.ones((2, 5, 8))).shape)
        (2, 5, 8)
    """

    block_class = TransformerEncoderBlock

    def __init__(self, num_layers, **kwargs):
        base = {
            key: kwargs.pop(key)
            for key in ("name", "trainable", "dtype")
            if key in kwargs
        }
        super().__init__(**base)
        utils.check_positive_int("num_layers", num_layers)
        self.num_layers = num_layers
        # One modifier for every block (a T5 bias is shared, as in T5).
        for name, kind in (
            ("score_mod", mods.ScoreMod),
            ("mask_mod", mods.MaskMod),
        ):
            kwargs[name] = mods.get(kwargs.get(name), kind)
        self._attention_options = kwargs.get("attention_options")
        self.blocks = [
            self.block_class(
                **_block_arguments(kwargs, i),
                name=f"block_{i}",
                dtype=self.dtype_policy,
            )
            for i in range(num_layers)
        ]
        self.final_norm = None
        if self.blocks[0].norm_first:
            self.final_norm = keras.layers.LayerNormalization(
                epsilon=self.blocks[0].layer_norm_epsilon,
                name="final_norm",
                dtype=self.dtype_policy,
            )
        self.supports_masking = True

    def build(self, inputs_shape):
        for block in self.blocks:
            block.build(inputs_shape)
        if self.final_norm is not None:
            self.final_norm.build(inputs_shape)

    def call(
        self,
        inputs,
        mask=None,
        return_attention_scores=False,
        training=None,
        segment_ids=None,
    ):
        x, weights = inputs, []
        for block in self.blocks:
            x = block(
                x,
                mask=mask,
                return_attention_scores=return_attention_scores,
                training=training,
                segment_ids=segment_ids,
            )
            if return_attention_scores:
                x, layer_weights = x
                weights.append(layer_weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return utils.pack_outputs(
            x, weights if return_attention_scores else None
        )

    def compute_output_shape(self, inputs_shape, *args, **kwargs):
        return inputs_shape

    def compute_output_spec(
        self, inputs, return_attention_scores=False, **kwargs
    ):
        output = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        weights = None
        if return_attention_scores:
            block = self.blocks[0].compute_output_spec(inputs, True)[1]
            weights = [block] * self.num_layers
        return utils.pack_outputs(output, weights)

    def get_config(self):
        return {
            **super().get_config(),
            **_stack_config(self),
            "num_layers": self.num_layers,
        }


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerDecoder(TransformerEncoder):
    """A stack of `num_layers` `TransformerDecoderBlock`s.

    Args:
        num_layers: number of blocks.
        **kwargs: arguments of `TransformerDecoderBlock` (and of `Layer`).

    Call arguments:
        inputs: `(B, T, d)`.
        encoder_outputs: optional `(B, S, d_e)`.
        mask: optional bool `(B, T)`.
        encoder_outputs_mask: optional bool `(B, S)`.
        cache: optional list of `num_layers` block caches
            `(B, 2, T_max, H_kv, D)` (one tensor per block: no stacking and
            slicing of the whole cache at every step).
        cache_update_index: int or scalar tensor.
        cross_attention_cache: optional list of `num_layers` block caches
            `(B, 2, S, H_kv, D)` from `compute_cross_attention_cache`.
        return_attention_scores: whether to also return a list of weight
            dicts, one per block.
        training: whether dropout is active.
        segment_ids: optional int `(B, T)` for a `mods.DocumentMask`.

    Returns:
        `(B, T, d)`; then the list of weights if `return_attention_scores`;
        then the list of updated block caches if `cache` was passed.

    Examples:
        >>> import numpy as np
        >>> decoder = TransformerDecoder(2, num_heads=2, intermediate_dim=16)
        >>> tuple(decoder(np.ones((2, 5, 8)), np.ones((2, 7, 8))).shape)
        (2, 5, 8)
    """

    block_class = TransformerDecoderBlock

    def __init__(self, num_layers, **kwargs):
        super().__init__(num_layers, **kwargs)
        # As its blocks: the caches pass through as they are (no autocast).
        self.autocast = False

    def build(self, inputs_shape, encoder_outputs_shape=None):
        for block in self.blocks:
            block.build(inputs_shape, encoder_outputs_shape)
        if self.final_norm is not None:
            self.final_norm.build(inputs_shape)

    def call(
        self,
        inputs,
        encoder_outputs=None,
        mask=None,
        encoder_outputs_mask=None,
        cache=None,
        cache_update_index=None,
        cross_attention_cache=None,
        return_attention_scores=False,
        training=None,
        segment_ids=None,
    ):
        self._check_caches(
            cache=cache, cross_attention_cache=cross_attention_cache
        )
        x, weights, caches = inputs, [], []
        for i, block in enumerate(self.blocks):
            results = block(
                x,
                encoder_outputs,
                mask=mask,
                encoder_outputs_mask=encoder_outputs_mask,
                cache=None if cache is None else cache[i],
                cache_update_index=cache_update_index,
                cross_attention_cache=None
                if cross_attention_cache is None
                else cross_attention_cache[i],
                return_attention_scores=return_attention_scores,
                training=training,
                segment_ids=segment_ids,
            )
            x, *extra = results if isinstance(results, tuple) else (results,)
            if return_attention_scores:
                weights.append(extra.pop(0))
            if cache is not None:
                caches.append(extra.pop(0))
        if self.final_norm is not None:
            x = self.final_norm(x)
        return utils.pack_outputs(
            x,
            weights if return_attention_scores else None,
            caches if cache is not None else None,
        )

    def _check_caches(self, **caches):
        for name, cache in caches.items():
            if cache is None:
                continue
            if not isinstance(cache, (list, tuple)):
                raise ValueError(
                    f"`{name}` must be a list of {self.num_layers} block "
                    "caches `(B, 2, T, H_kv, D)`, one per block. Received: "
                    f"{name} of shape {tuple(cache.shape)}"
                )
            if len(cache) != self.num_layers:
                raise ValueError(
                    f"`{name}` must hold one cache per block ("
                    f"{self.num_layers}). Received: {len(cache)} caches"
                )

    def initial_cache(self, batch_size, max_length):
        """Each block's empty self-attention cache, for `cache`.

        Args:
            batch_size: int (or scalar int tensor) `B`.
            max_length: int `T_max`.

        Returns:
            List of `num_layers` block caches.
        """
        return [
            block.initial_cache(batch_size, max_length) for block in self.blocks
        ]

    def compute_cross_attention_cache(self, encoder_outputs):
        """Each block's cross-attention keys/values, once per source.

        Args:
            encoder_outputs: `(B, S, d_e)`.

        Returns:
            List of `num_layers` tensors `(B, 2, S, H_kv, D)`: the
            `cross_attention_cache` of `call`.
        """
        return [
            block.compute_cross_attention_cache(encoder_outputs)
            for block in self.blocks
        ]

    def compute_output_spec(
        self,
        inputs,
        encoder_outputs=None,
        cache=None,
        return_attention_scores=False,
        **kwargs,
    ):
        spec = self.blocks[0].compute_output_spec(
            inputs,
            encoder_outputs,
            None if cache is None else cache[0],
            return_attention_scores,
        )
        output, *extra = spec if isinstance(spec, tuple) else (spec,)
        weights = caches = None
        if return_attention_scores:
            weights = [extra.pop(0)] * self.num_layers
        if cache is not None:
            caches = [extra.pop(0)] * self.num_layers
        return utils.pack_outputs(output, weights, caches)
