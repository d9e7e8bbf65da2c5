"""Benchmark: packed sequences with `DocumentMask` vs padded batches.

Training a small causal Transformer (a next-token model over random
documents of 8 to 64 tokens, 2 blocks of width 128, ALiBi positions) with
`fit`, two ways over the same documents:

- **padded**: one document per row, padded to 64 (the padding masked);
- **packed**: documents packed end to end into rows of 256 tokens with
  their `segment_ids`, `mask_mod=DocumentMask() & Causal()` keeping each
  document to itself (ALiBi's relative positions need no per-document
  position reset).

Both see every real token once per epoch. Reports real (non-padding) tokens
per second of training, the median over epochs after the first, and
`packed_speedup` = packed / padded. Prints one JSON line.

    python benchmarks/packed_sequences.py [--quick]
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_attention as ka  # noqa: E402
from keras_attention import mods  # noqa: E402

VOCAB, WIDTH, PAD_LENGTH, ROW = 1000, 128, 64, 256


def documents(num, rng):
    lengths = rng.integers(8, PAD_LENGTH + 1, num)
    return [rng.integers(1, VOCAB, n).astype("int32") for n in lengths]


def padded(docs):
    tokens = np.zeros((len(docs), PAD_LENGTH), "int32")
    for row, doc in enumerate(docs):
        tokens[row, : len(doc)] = doc
    return {"tokens": tokens}, np.roll(tokens, -1, axis=1)


def packed(docs):
    """Rows of `ROW` tokens, documents whole, with segment ids."""
    rows, segments, row, segment = [], [], [], []
    for doc in docs:
        if len(row) + len(doc) > ROW:
            rows.append(row), segments.append(segment)
            row, segment = [], []
        segment += [len(segments) * 1000 + len(set(segment)) + 1] * len(doc)
        row += list(doc)
    rows.append(row), segments.append(segment)
    tokens = np.zeros((len(rows), ROW), "int32")
    segment_ids = np.zeros((len(rows), ROW), "int32")
    for i, (r, s) in enumerate(zip(rows, segments)):
        tokens[i, : len(r)], segment_ids[i, : len(s)] = r, s
    return {"tokens": tokens, "segment_ids": segment_ids}, np.roll(
        tokens, -1, axis=1
    )


def model(packed_rows):
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    inputs = {"tokens": tokens}
    x = ka.TokenAndPositionEmbedding(VOCAB, WIDTH, positional=None)(tokens)
    mask_mod, call = mods.Causal(), {}
    if packed_rows:
        inputs["segment_ids"] = keras.Input(
            (None,), dtype="int32", name="segment_ids"
        )
        mask_mod = mods.DocumentMask() & mods.Causal()
        call = {"segment_ids": inputs["segment_ids"]}
    x = ka.TransformerEncoder(
        2, num_heads=4, intermediate_dim=4 * WIDTH, norm_first=True,
        score_mod=mods.ALiBi(), mask_mod=mask_mod,
    )(x, **call)  # fmt: skip
    result = keras.Model(inputs, keras.layers.Dense(VOCAB)(x))
    result.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=0
        ),
    )
    return result


class EpochTimes(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def tokens_per_second(packed_rows, docs, epochs, batch):
    keras.utils.set_random_seed(0)
    inputs, targets = (packed if packed_rows else padded)(docs)
    timer = EpochTimes()
    timer.times = []
    model(packed_rows).fit(
        inputs, targets, batch_size=batch, epochs=epochs, verbose=0,
        callbacks=[timer],
    )  # fmt: skip
    real = int((inputs["tokens"] > 0).sum())
    seconds = statistics.median(timer.times[1:] or timer.times)
    return {"rows": len(targets), "real_tokens": real,
            "tokens_per_s": round(real / seconds, 1)}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    args = parser.parse_args()
    num, epochs = (64, 2) if args.quick else (2048, 4)
    docs = documents(num, np.random.default_rng(0))
    padded_run = tokens_per_second(False, docs, epochs, batch=32)
    packed_run = tokens_per_second(True, docs, epochs, batch=8)
    print(
        json.dumps(
            {
                "benchmark": "packed_sequences",
                "quick": args.quick,
                "documents": num,
                "padded": padded_run,
                "packed": packed_run,
                "packed_speedup": round(
                    packed_run["tokens_per_s"] / padded_run["tokens_per_s"], 2
                ),
                "keras": keras.__version__,
                "backend": keras.config.backend(),
            }
        )
    )


if __name__ == "__main__":
    main()
