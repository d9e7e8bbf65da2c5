"""Seq2Seq (AttentionDecoder) vs the classic Keras-tutorial attention model.

The peer is the model of the Keras/TensorFlow NMT tutorials: a GRU encoder,
a GRU decoder started from the encoder state, then
`keras.layers.AdditiveAttention` over all decoder outputs at once and a
dense layer (no input feeding). Ours is `keras_attention.models.Seq2Seq`
with the same embedding and RNN sizes (bidirectional encoder off, Bahdanau
attention), once with `input_feeding=False` (the tutorial's architecture:
`train_ratio`) and once with input feeding (attention inside the loop:
`train_ratio_input_feeding_*`). All train on the same batches in this
process, with the same `jit_compile` setting; a ratio is our steps/s over
theirs (>= 1.0 means we are not slower).

Also times greedy decoding of the input-feeding model, plain `tf.function` vs
`jit_compile=True`.

    python benchmarks/rnn_decoder.py [--quick]

Prints one JSON line.
"""

import argparse
import json
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras_attention.models import Seq2Seq


def tutorial_model(source_vocab, target_vocab, embedding_dim, units):
    """GRU encoder-decoder + keras.layers.AdditiveAttention (the peer)."""
    source = keras.Input((None,), dtype="int32", name="source")
    target_in = keras.Input((None,), dtype="int32", name="target_in")
    memory, state = keras.layers.GRU(
        units, return_sequences=True, return_state=True
    )(
        keras.layers.Embedding(source_vocab, embedding_dim, mask_zero=True)(
            source
        )
    )
    outputs = keras.layers.GRU(units, return_sequences=True)(
        keras.layers.Embedding(target_vocab, embedding_dim, mask_zero=True)(
            target_in
        ),
        initial_state=state,
    )
    context = keras.layers.AdditiveAttention()([outputs, memory])
    hidden = keras.layers.Dense(units, activation="tanh", use_bias=False)(
        keras.layers.Concatenate()([outputs, context])
    )
    logits = keras.layers.Dense(target_vocab)(hidden)
    return keras.Model({"source": source, "target_in": target_in}, logits)


def compile_and_warm_up(model, data, batch_size, jit_compile):
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    inputs, targets = data
    # Tracing and XLA compilation happen here, not in the timed runs.
    model.fit(inputs, targets, batch_size=batch_size, epochs=1, verbose=0,
              steps_per_epoch=2)  # fmt: skip


def epoch_seconds(model, data, batch_size, steps):
    inputs, targets = data
    start = time.perf_counter()
    model.fit(
        inputs,
        targets,
        batch_size=batch_size,
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
    )
    return time.perf_counter() - start


def steps_per_second(models, data, batch_size, steps, jit_compile, repeats):
    """Training steps/s of each model: median of interleaved timed runs."""
    for model in models.values():
        compile_and_warm_up(model, data, batch_size, jit_compile)
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(epoch_seconds(model, data, batch_size, steps))
    return {name: steps / statistics.median(t) for name, t in times.items()}


def decode_seconds(model, source, max_length, jit_compile, repeats):
    generate = tf.function(
        lambda source: model.generate_function(source, max_length),
        jit_compile=jit_compile,
    )
    generate(source)  # trace and compile
    start = time.perf_counter()
    for _ in range(repeats):
        generate(source).numpy()
    return (time.perf_counter() - start) / repeats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sizes = dict(
        vocab=40 if args.quick else 64,
        embedding_dim=16 if args.quick else 64,
        units=16 if args.quick else 128,
        source_length=12 if args.quick else 30,
        target_length=6 if args.quick else 12,
        batch_size=16 if args.quick else 64,
        steps=3 if args.quick else 30,
    )
    rng = np.random.default_rng(0)
    batch, steps = sizes["batch_size"], sizes["steps"]
    count = batch * steps
    source = rng.integers(4, sizes["vocab"], (count, sizes["source_length"]))
    target = rng.integers(4, sizes["vocab"], (count, sizes["target_length"]))
    inputs = {"source": source, "target_in": target}
    data = (inputs, target)
    args_ = (sizes["vocab"], sizes["vocab"], sizes["embedding_dim"])

    keras.utils.set_random_seed(0)
    peer = tutorial_model(*args_, sizes["units"])
    # The tutorial's decoder: Bahdanau scores, tanh(W_c [h; c]) → logits.
    classic = {
        "units": sizes["units"],
        "bidirectional": False,
        "attention": "bahdanau",
        "attention_output": "concat",
        "output_norm": False,
    }
    models = {
        # Same architecture as the tutorial: attention after the RNN.
        "": Seq2Seq(*args_, **classic),
        # With input feeding (attention inside the loop).
        "_input_feeding": Seq2Seq(*args_, **classic, input_feeding=True),
    }  # fmt: skip
    results = {"benchmark": "rnn_decoder", "quick": args.quick, **sizes}
    repeats = 1 if args.quick else 5
    # --quick (a smoke test) skips the slow XLA compilations.
    for jit in (False,) if args.quick else (True, False):
        tag = "xla" if jit else "graph"
        rates = steps_per_second(
            {"tutorial": peer, **models}, data, batch, steps, jit, repeats
        )
        peer_rate = rates.pop("tutorial")
        results[f"train_steps_per_s_tutorial_{tag}"] = round(peer_rate, 2)
        for suffix, rate in rates.items():
            results[f"train_steps_per_s_ours{suffix}_{tag}"] = round(rate, 2)
            results[f"train_ratio{suffix}_{tag}"] = round(rate / peer_rate, 3)
    results["train_ratio"] = results.get(
        "train_ratio_xla", results["train_ratio_graph"]
    )
    ours = models["_input_feeding"]
    repeats = 2 if args.quick else 10
    sample = source[:batch]
    plain = decode_seconds(ours, sample, sizes["target_length"], False, repeats)
    jit = decode_seconds(ours, sample, sizes["target_length"], True, repeats)
    results["greedy_decode_ms_plain"] = round(plain * 1000, 2)
    results["greedy_decode_ms_jit"] = round(jit * 1000, 2)
    results["greedy_jit_speedup"] = round(plain / jit, 2)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
