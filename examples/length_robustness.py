"""Length robustness: why attention was invented (Bahdanau et al. 2015, Fig. 2).

Without attention, an RNN encoder-decoder must squeeze the whole source into
one fixed-size vector, and its accuracy falls as sentences get longer; with
attention the decoder looks back at every source position and the fall
mostly disappears. This example repeats that experiment in small, on a task
with an exact answer: reversing a random token sequence
(`keras_attention.datasets.copy_reverse`).

Three models, trained with `fit` on the same sequences of 2 to `N` tokens:

- **RNN, no attention**: a bidirectional-GRU encoder whose final state is
  all the GRU decoder gets (Cho et al. 2014's RNNencdec), written here in
  plain Keras and decoded with `keras_attention.decoding.greedy_search`;
- **RNN + Bahdanau attention**: `keras_attention.models.Seq2Seq`;
- **Transformer**: `keras_attention.models.Transformer`.

Each is scored by exact-sequence accuracy (greedy decoding) on held-out
sequences of every length from 2 to `1.5 N`, beyond what training showed.
Writes `length_robustness.png` (accuracy vs source length, three curves) to
`--out`.

    python examples/length_robustness.py [--quick] [--out DIR]
"""

import argparse
import os
import time

import quiet_start  # noqa: F401  (first: no TensorFlow start-up lines)

# isort: split
import keras
import matplotlib
import numpy as np
from keras import ops

from keras_attention import decoding
from keras_attention.datasets import sequences
from keras_attention.models import Seq2Seq
from keras_attention.models import Transformer

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

FULL = {
    "train_length": 12,
    "num_train": 12000,
    "epochs": 8,
    "units": 64,
    "num_test": 100,
}
QUICK = {
    "train_length": 8,
    "num_train": 4000,
    "epochs": 3,
    "units": 32,
    "num_test": 20,
}
NUM_SYMBOLS = 10
BATCH_SIZE = 128


class NoAttention:
    """A GRU encoder-decoder whose only link is the encoder's final state.

    `model` is the training graph (teacher forcing, same inputs and logits
    as `Seq2Seq`); `generate` decodes greedily one token at a time with the
    decoder GRU's cell, as `Seq2Seq.generate` does.
    """

    def __init__(self, vocab_size, units):
        self.source_embedding = keras.layers.Embedding(
            vocab_size, units, mask_zero=True
        )
        self.encoder = keras.layers.Bidirectional(
            keras.layers.GRU(units, return_state=True)
        )
        self.bridge = keras.layers.Dense(units, activation="tanh")
        self.target_embedding = keras.layers.Embedding(
            vocab_size, units, mask_zero=True
        )
        self.decoder = keras.layers.GRU(units, return_sequences=True)
        self.logits = keras.layers.Dense(vocab_size)

        source = keras.Input((None,), dtype="int32", name="source")
        target_in = keras.Input((None,), dtype="int32", name="target_in")
        state = self.encode(source)  # (B, units): the whole source
        hidden = self.decoder(
            self.target_embedding(target_in), initial_state=state
        )
        self.model = keras.Model(
            {"source": source, "target_in": target_in}, self.logits(hidden)
        )

    def encode(self, source):
        _, forward, backward = self.encoder(self.source_embedding(source))
        return self.bridge(ops.concatenate([forward, backward], axis=-1))

    def generate(self, source, max_length):
        def step_fn(tokens, state, index):
            # The embedding table directly: no keras mask on a cell input.
            x = ops.take(self.target_embedding.embeddings, tokens, axis=0)
            hidden, _ = self.decoder.cell(x, state)
            logits = self.logits(hidden)  # (B, V)
            reserved = ops.arange(ops.shape(logits)[-1]) < 2  # pad, start
            return ops.where(reserved, -1e9, logits), hidden

        start = np.full((len(source),), sequences.START_ID, "int32")
        return decoding.greedy_search(
            step_fn,
            self.encode(ops.convert_to_tensor(source)),
            start,
            max_length,
            end_id=sequences.END_ID,
        )


def build(name, vocab, units, max_length):
    """`(training model, generate(source, max_length) function)`."""
    if name == "RNN, no attention":
        rnn = NoAttention(vocab, units)
        return rnn.model, rnn.generate
    if name == "RNN + Bahdanau attention":
        model = Seq2Seq(
            vocab, vocab, embedding_dim=units, units=units, attention="bahdanau"
        )
    else:
        model = Transformer(
            vocab,
            vocab,
            num_layers=2,
            hidden_dim=units,
            num_heads=4,
            intermediate_dim=2 * units,
            dropout=0.0,
            max_length=max_length,
        )
    return model, model.generate


def accuracy_by_length(generate, test):
    """Exact-sequence accuracy of greedy decoding, per source length."""
    tokens = generate(test["source"], test["source"].shape[1] + 1)
    predictions = sequences.to_symbols(tokens)
    expected = sequences.to_symbols(test["target_out"])
    correct = np.array([p == e for p, e in zip(predictions, expected)])
    return {
        int(n): float(correct[test["length"] == n].mean())
        for n in np.unique(test["length"])
    }


def test_set(num_per_length, max_length, seed):
    """`num_per_length` sequences of each length 2..max_length."""
    parts = [
        sequences.copy_reverse(
            num_per_length,
            n,
            n,
            NUM_SYMBOLS,
            seed=seed + n,
            source_length=max_length,
        )
        for n in range(2, max_length + 1)
    ]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def plot(results, train_length, path):
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for (name, curve), marker in zip(results.items(), "osd"):
        ax.plot(list(curve), list(curve.values()), marker=marker, label=name)
    ax.axvspan(
        train_length + 0.5,
        max(max(c) for c in results.values()) + 0.5,
        color="grey",
        alpha=0.15,
        label="longer than any training sequence",
    )
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("source length (tokens)")
    ax.set_ylabel("exact-sequence accuracy (greedy)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("Reversing sequences: accuracy vs length")
    ax.legend(fontsize=8, loc="lower left")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--out", default="out/length_robustness")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    train_length = settings["train_length"]
    test_length = train_length * 3 // 2
    train = sequences.copy_reverse(
        settings["num_train"], 2, train_length, NUM_SYMBOLS, seed=args.seed
    )
    test = test_set(settings["num_test"], test_length, seed=args.seed + 7919)
    vocab = sequences.vocabulary_size(NUM_SYMBOLS)
    print(
        f"reverse sequences of 2-{train_length} tokens "
        f"({len(train['source'])} for training), test on 2-{test_length}"
    )

    results, seconds = {}, {}
    for name in [
        "RNN, no attention",
        "RNN + Bahdanau attention",
        "Transformer",
    ]:
        print(f"\n== {name}")
        model, generate = build(name, vocab, settings["units"], test_length + 1)
        steps = settings["epochs"] * -(-len(train["source"]) // BATCH_SIZE)
        model.compile(
            # Warm up, then decay: a constant 3e-3 can knock the
            # Transformer out of a good minimum late in training.
            optimizer=keras.optimizers.Adam(
                keras.optimizers.schedules.CosineDecay(
                    0.0,
                    decay_steps=steps,
                    warmup_target=3e-3,
                    warmup_steps=steps // 10,
                    alpha=0.02,
                )
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        start = time.perf_counter()
        model.fit(
            {"source": train["source"], "target_in": train["target_in"]},
            train["target_out"],
            batch_size=BATCH_SIZE,
            epochs=settings["epochs"],
            verbose=2 if os.environ.get("CI") else 1,
        )
        seconds[name] = time.perf_counter() - start
        results[name] = accuracy_by_length(generate, test)

    print("\nexact-sequence accuracy by source length (greedy decoding)")
    names = list(results)
    short = ["no attention", "Bahdanau", "Transformer"]
    print(f"{'length':>6} " + " ".join(f"{s:>13}" for s in short))
    for length in results[names[0]]:
        unseen = "  (unseen)" if length > train_length else ""
        row = " ".join(f"{results[n][length]:>13.0%}" for n in names)
        print(f"{length:>6} {row}{unseen}")
    print("training s  " + " ".join(f"{seconds[n]:>13.0f}" for n in names))
    path = os.path.join(args.out, "length_robustness.png")
    plot(results, train_length, path)
    print(f"wrote {path}")
    return {"accuracy": results, "training_seconds": seconds}


if __name__ == "__main__":
    main()
