"""Benchmark: greedy generation, cached vs uncached, ours vs keras_hub.

What is compared, at batch 1 and batch 64, generating 64 tokens from a
source of 32 tokens (vocabulary 1000 on both sides, 2 encoder and 2 decoder
blocks, hidden 256, 4 heads, feed-forward 1024, pre-norm, no dropout):

- `ours_cached`: `keras_attention.models.Transformer.generate(source, 64)`
  (greedy, key/value cache, `tf.function` traced once);
- `ours_uncached`: `uncached_generate_function` below, the same greedy
  search where each step re-runs the decoder over the whole prefix (the
  O(T²) reference the cache is measured against);
- `keras_hub`: the same encoder-decoder built from keras_hub layers
  (`TokenAndPositionEmbedding`, `TransformerEncoder`, `TransformerDecoder`
  with cross-attention, a final layer norm and a dense head) decoded by
  `keras_hub.samplers.GreedySampler` with keras_hub's caches: a
  self-attention cache updated every step and a cross-attention cache of the
  encoder outputs computed once per source (as `BartSeq2SeqLM` does), inside
  one `tf.function`.

Each timing covers the whole call: encoding the source, building the caches
and the 64 decoding steps. The end token is disabled in our model (its logit
bias is set very low) and the sampler gets no stop token, so every run
decodes all 64 steps. Timings are medians of interleaved runs in this
process. Prints one JSON line: `cache_speedup` = uncached / cached time
(target >= 4 at batch 64) and `ratio_vs_keras_hub` = ours cached /
keras_hub (target <= 1.0).

    python benchmarks/decoding.py [--quick]
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from keras_attention import decoding  # noqa: E402
from keras_attention.constants import END_ID  # noqa: E402
from keras_attention.constants import PAD_ID  # noqa: E402
from keras_attention.constants import START_ID  # noqa: E402
from keras_attention.models import Transformer  # noqa: E402
from keras_attention.models.generation import never_reserved  # noqa: E402


def uncached_generate_function(model, source, max_length):
    """Greedy `Transformer` generation without the key/value cache.

    Each step writes the new token into the prefix and re-runs the decoder
    stack over the whole (causal) prefix: the same tokens as
    `model.generate(source, max_length)`, in O(T²) decoder work.
    """
    source = ops.cast(source, "int32")
    memory = model.encoder(source)  # (B, S, d)
    memory_mask = ops.not_equal(source, PAD_ID)

    def step_fn(tokens, prefix, index):
        prefix = ops.slice_update(prefix, (0, index), tokens[:, None])
        hidden = model.decoder_stack(
            model.target_embedding(prefix),
            memory,
            encoder_outputs_mask=memory_mask,
        )  # (B, L, d)
        logits = model.logits_layer(ops.take(hidden, index, axis=1))
        return never_reserved(logits), prefix

    batch = ops.shape(source)[0]
    return decoding.greedy_search(
        step_fn,
        ops.zeros((batch, max_length), "int32"),
        ops.full((batch,), START_ID, "int32"),
        max_length,
        END_ID,
        PAD_ID,
    )


def build_ours(vocab, layers, hidden, heads, intermediate):
    model = Transformer(
        vocab,
        vocab,
        num_layers=layers,
        hidden_dim=hidden,
        num_heads=heads,
        intermediate_dim=intermediate,
        dropout=0.0,
        max_length=128,
    )
    bias = model.logits_layer.bias
    bias.assign(tf.tensor_scatter_nd_update(bias, [[END_ID]], [-1e4]))
    return model


class KerasHubSeq2Seq:
    """keras_hub layers + GreedySampler, with keras_hub's caches."""

    def __init__(self, vocab, layers, hidden, heads, intermediate):
        def embedding():
            return keras_hub.layers.TokenAndPositionEmbedding(
                vocab, 128, hidden
            )

        def block(cls):
            return cls(intermediate, heads, normalize_first=True)

        self.heads, self.head_dim = heads, hidden // heads
        self.source_embedding = embedding()
        self.target_embedding = embedding()
        self.encoder = [
            block(keras_hub.layers.TransformerEncoder) for _ in range(layers)
        ]
        self.decoder = [
            block(keras_hub.layers.TransformerDecoder) for _ in range(layers)
        ]
        self.encoder_norm = keras.layers.LayerNormalization(epsilon=1e-5)
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-5)
        self.logits = keras.layers.Dense(vocab)
        self.sampler = keras_hub.samplers.GreedySampler()
        # Build every layer with a forward pass.
        source = np.full((1, 4), 5, "int32")
        memory = self.encode(source)
        x = self.target_embedding(source)
        for layer in self.decoder:
            x = layer(x, memory)
        self.logits(self.decoder_norm(x))
        # Never pad, start or end (ours masks pad and start itself).
        bias = self.logits.bias
        bias.assign(
            tf.tensor_scatter_nd_update(bias, [[0], [1], [2]], [-1e4] * 3)
        )
        self.generate = tf.function(self.generate_function)

    def encode(self, source):
        x = self.source_embedding(source)
        mask = tf.not_equal(source, 0)
        for layer in self.encoder:
            x = layer(x, padding_mask=mask)
        return self.encoder_norm(x)

    def generate_function(self, source, max_length):
        batch = tf.shape(source)[0]
        mask = tf.not_equal(source, 0)
        memory = self.encode(source)  # (B, S, d)
        # Cross-attention keys/values of the source, once per source.
        cross = []
        for layer in self.decoder:
            empty = tf.zeros(
                (batch, 2, tf.shape(source)[1], self.heads, self.head_dim)
            )
            _, cache = layer._cross_attention_layer(
                memory[:, :1], memory, cache=empty, cache_update_index=0
            )
            cross.append(cache)
        self_cache = tf.zeros(
            (batch, len(self.decoder), 2, max_length, self.heads, self.head_dim)
        )

        def next_fn(prompt, cache, index):
            self_cache, cross = cache
            position = index - 1
            x = self.target_embedding(
                prompt[:, position : position + 1], start_index=position
            )
            caches = []
            for i, layer in enumerate(self.decoder):
                x, layer_cache, _ = layer(
                    x,
                    memory,
                    encoder_padding_mask=mask,
                    self_attention_cache=self_cache[:, i],
                    self_attention_cache_update_index=position,
                    cross_attention_cache=cross[i],
                )
                caches.append(layer_cache)
            logits = self.logits(self.decoder_norm(x))[:, 0]
            return logits, None, (tf.stack(caches, axis=1), cross)

        prompt = tf.concat(
            [
                tf.fill((batch, 1), START_ID),
                tf.zeros((batch, max_length), "int32"),
            ],
            axis=1,
        )
        prompt_mask = tf.concat(
            [
                tf.ones((batch, 1), "bool"),
                tf.zeros((batch, max_length), "bool"),
            ],
            axis=1,
        )
        tokens = self.sampler(
            next_fn,
            prompt,
            cache=(self_cache, tuple(cross)),
            index=1,
            mask=prompt_mask,
        )
        return tokens[:, 1:]


def timed(fn):
    start = time.perf_counter()
    np.asarray(fn())  # wait for the result
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    args = parser.parse_args()
    if args.quick:
        vocab, layers, hidden, heads, intermediate = 50, 1, 16, 2, 32
        source_length, max_length, batches, repeats = 8, 8, (1, 4), 2
    else:
        vocab, layers, hidden, heads, intermediate = 1000, 2, 256, 4, 1024
        source_length, max_length, batches, repeats = 32, 64, (1, 64), 5
    sizes = (vocab, layers, hidden, heads, intermediate)
    keras.utils.set_random_seed(0)
    ours = build_ours(*sizes)
    uncached = tf.function(
        lambda source: uncached_generate_function(ours, source, max_length)
    )
    peer = KerasHubSeq2Seq(*sizes)
    rng = np.random.default_rng(0)
    results = []
    for batch in batches:
        source = tf.constant(
            rng.integers(4, vocab, size=(batch, source_length)), "int32"
        )
        runs = {
            "ours_cached": lambda s=source: ours.generate(s, max_length),
            "ours_uncached": lambda s=source: uncached(s),
            "keras_hub": lambda s=source: peer.generate(s, max_length),
        }
        outputs = {name: np.asarray(fn()) for name, fn in runs.items()}
        for name, tokens in outputs.items():  # all 64 steps were decoded
            assert tokens.shape == (batch, max_length), name
            assert (tokens != 0).all(), name
        np.testing.assert_array_equal(
            outputs["ours_cached"], outputs["ours_uncached"]
        )
        times = {name: [] for name in runs}
        for _ in range(repeats):
            for name, fn in runs.items():
                times[name].append(timed(fn))
        ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
        results.append(
            {
                "batch": batch,
                **{f"{name}_ms": round(t, 1) for name, t in ms.items()},
                "cache_speedup": round(
                    ms["ours_uncached"] / ms["ours_cached"], 2
                ),
                "ratio_vs_keras_hub": round(
                    ms["ours_cached"] / ms["keras_hub"], 3
                ),
            }
        )
    last = results[-1]
    print(
        json.dumps(
            {
                "benchmark": "decoding",
                "quick": args.quick,
                "compared": (
                    "greedy generation of max_length tokens (whole call: "
                    "encode, caches, loop); ours_cached/ours_uncached: "
                    "keras_attention Transformer.generate / the same "
                    "greedy search re-running the decoder over the "
                    "prefix; keras_hub: keras_hub "
                    "TokenAndPositionEmbedding + TransformerEncoder + "
                    "TransformerDecoder (cross-attention) + GreedySampler "
                    "with a self-attention cache and a cross-attention "
                    "cache computed once; all under tf.function, no XLA"
                ),
                "vocab": vocab,
                "num_layers": layers,
                "hidden_dim": hidden,
                "num_heads": heads,
                "intermediate_dim": intermediate,
                "source_length": source_length,
                "max_length": max_length,
                "repeats": repeats,
                "results": results,
                "target_cache_speedup": 4.0,
                "target_ratio_vs_keras_hub": 1.0,
                "target_met": last["cache_speedup"] >= 4.0
                and all(r["ratio_vs_keras_hub"] <= 1.0 for r in results),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "keras_hub": keras_hub.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
