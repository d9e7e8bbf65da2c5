"""Sorting digits: a Transformer learns where to look for the next digit.

`7 3 9 3 0` → `0 3 3 7 9`. Each output position must find, wherever it
sits in the source, the smallest digit not yet written: there is no fixed
alignment to memorise, so the decoder's cross-attention has to search the
source by content. The cross-attention heatmap shows it: each output digit
attends to the source positions holding that digit.

Trains `keras_attention.models.Transformer` with `fit` (Keras progress
bar) on random sequences from `keras_attention.datasets.sorting`, reports
the exact-sequence accuracy on held-out sequences (never seen in training)
by length, and writes to `--out`:

- `sorting_attention.png`: head-averaged cross-attention of one example;
- `sorting_heads.png`: each cross-attention head of the last block;
- `sorting.keras`: the trained model.

    python examples/sorting.py [--quick] [--out DIR]
"""

import argparse
import os
import time

import quiet_start  # noqa: F401  (first: no TensorFlow start-up lines)

# isort: split
import keras
import matplotlib
import numpy as np

from keras_attention.datasets import sequences
from keras_attention.models import Transformer
from keras_attention.visualization import plot_attention
from keras_attention.visualization import plot_heads

matplotlib.use("Agg")

MIN_LENGTH, MAX_LENGTH = 4, 10
FULL = {"num_train": 30000, "epochs": 6, "hidden_dim": 64}
QUICK = {"num_train": 4000, "epochs": 3, "hidden_dim": 32}
BATCH_SIZE = 128


def held_out(train, num_test, seed):
    """Test sequences drawn with another seed, none seen in training."""
    seen = {tuple(row) for row in train["source"]}
    data = sequences.sorting(
        num_test * 2, MIN_LENGTH, MAX_LENGTH, seed=seed + 7919
    )
    keep = [i for i, row in enumerate(data["source"]) if tuple(row) not in seen]
    return {key: value[keep[:num_test]] for key, value in data.items()}


def predict(model, source):
    tokens = model.generate(source, source.shape[1] + 1)
    return sequences.to_symbols(tokens)


def cross_attention(model, source, target_in):
    """Cross-attention weights of every decoder block: `[(B, H, T, S)]`."""
    memory = model.encoder(source)
    _, weights = model.decoder_stack(
        model.target_embedding(target_in),
        memory,
        encoder_outputs_mask=source != 0,
        return_attention_scores=True,
    )
    return [np.asarray(w["cross_attention"]) for w in weights]


def plot_example(model, data, index, out):
    """`sorting_attention.png` and `sorting_heads.png` of one example."""
    length = int(data["length"][index])
    source = data["source"][index : index + 1]
    source_tokens = list(sequences.to_symbols(source)[0])
    # What `generate` attends to: last block, mean over heads, (1, T, S).
    tokens, attention = model.generate(
        source, length + 1, return_attention=True
    )
    output = sequences.to_symbols(tokens)[0]
    rows = len(output) + 1  # the digits and the end token
    fig = plot_attention(
        np.asarray(attention)[0, :rows, :length],
        source_tokens,
        list(output) + ["<end>"],
        title=f"Sorting {''.join(source_tokens)} → {output}",
    )
    fig.axes[0].set_xlabel("source digit (in input order)")
    fig.axes[0].set_ylabel("output digit (generated)")
    fig.savefig(os.path.join(out, "sorting_attention.png"), dpi=90)

    # Every head of the last block, teacher-forced on the true target.
    target = sequences.to_symbols(data["target_out"][index : index + 1])[0]
    target_in = data["target_in"][index : index + 1, : length + 1]
    heads = cross_attention(model, source, target_in)[-1][0]  # (H, T, S)
    fig = plot_heads(
        heads[:, :, :length],
        source_tokens,
        list(target) + ["<end>"],
        title="Cross-attention heads of the last decoder block",
    )
    fig.savefig(os.path.join(out, "sorting_heads.png"), dpi=80)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--out", default="out/sorting")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    settings["epochs"] = args.epochs or settings["epochs"]
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    train = sequences.sorting(
        settings["num_train"], MIN_LENGTH, MAX_LENGTH, seed=args.seed
    )
    test = held_out(train, 300 if args.quick else 2000, args.seed)
    print(
        f"{len(train['source'])} training / {len(test['source'])} held-out "
        f"sequences of {MIN_LENGTH}-{MAX_LENGTH} digits, e.g. "
        f"{sequences.to_symbols(train['source'][:1])[0]} → "
        f"{sequences.to_symbols(train['target_out'][:1])[0]}"
    )
    vocab = sequences.vocabulary_size()
    hidden_dim = settings["hidden_dim"]
    model = Transformer(
        vocab,
        vocab,
        num_layers=2,
        hidden_dim=hidden_dim,
        num_heads=4,
        intermediate_dim=2 * hidden_dim,
        dropout=0.0,
        max_length=MAX_LENGTH + 1,
    )
    steps = settings["epochs"] * -(-settings["num_train"] // BATCH_SIZE)
    model.compile(
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
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        {"source": train["source"], "target_in": train["target_in"]},
        train["target_out"],
        batch_size=BATCH_SIZE,
        epochs=settings["epochs"],
        verbose=2 if os.environ.get("CI") else 1,
    )
    training_seconds = time.perf_counter() - start

    predictions = predict(model, test["source"])
    expected = sequences.to_symbols(test["target_out"])
    correct = np.array([p == e for p, e in zip(predictions, expected)])
    by_length = {
        int(n): float(correct[test["length"] == n].mean())
        for n in np.unique(test["length"])
    }
    inputs = sequences.to_symbols(test["source"])
    print(f"\n{'input':<12}{'prediction':<12}{'expected':<12}ok")
    for text, prediction, target in list(zip(inputs, predictions, expected))[
        :8
    ]:
        mark = "✓" if prediction == target else "✗"
        print(f"{text:<12}{prediction:<12}{target:<12}{mark}")
    print(f"\n{'length':>6} {'exact-sequence accuracy':>24}")
    for length, accuracy in by_length.items():
        print(f"{length:>6} {accuracy:>24.1%}")
    accuracy = float(correct.mean())
    print(
        f"{'all':>6} {accuracy:>24.1%}   ({len(correct)} held-out sequences, "
        f"{training_seconds:.0f} s of training)"
    )

    plot_example(model, test, int(np.argmax(test["length"])), args.out)
    model.save(os.path.join(args.out, "sorting.keras"))
    print(f"plots and model written to {args.out}")
    return {
        "accuracy": accuracy,
        "by_length": by_length,
        "training_seconds": training_seconds,
    }


if __name__ == "__main__":
    main()
