"""Date normalisation: a Seq2Seq with Bahdanau attention reads any date.

"3rd of March 1997", "Tuesday, 4 July 2023", "07/04/23", "4 Jul 2023" ...
→ "2023-07-04". A character-level bidirectional-GRU encoder and an attention
GRU decoder (`keras_attention.models.Seq2Seq`) learn to find the day, the
month and the year wherever the format puts them; the alignment heatmap
shows where each output character looked.

Trains with `fit` (Keras progress bar), prints sample conversions and the
exact-match accuracy on held-out dates, and writes to `--out`:

- `attention.png`: the alignment heatmap of one held-out date, and
  `attention.html`: the same alignments in an interactive page;
- `date_normalization.keras`: the trained model (`keras.models.load_model`);
- `generate/`: a SavedModel whose `generate` endpoint maps source ids
  `int32 (N, S)` to ISO ids `int32 (N, 11)` (greedy search, no keras needed).

    python examples/date_normalization.py [--quick] [--out DIR]
"""

import argparse
import os
import time

import quiet_start  # noqa: F401  (first: no TensorFlow start-up lines)

# isort: split
import keras
import matplotlib
import numpy as np

from keras_attention.datasets import dates
from keras_attention.models import Seq2Seq
from keras_attention.visualization import attention_html
from keras_attention.visualization import plot_attention

matplotlib.use("Agg")

FULL = {"num_train": 30000, "epochs": 3, "units": 64, "embedding_dim": 32}
BATCH_SIZE = 128
QUICK = {"num_train": 3000, "epochs": 2, "units": 32, "embedding_dim": 16}


class TimeBudget(keras.callbacks.Callback):
    """Stop training once `seconds` of wall-clock time have passed."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def exact_match(model, data, batch_size=500):
    """Greedy-decode every source; the fraction decoded exactly right."""
    predictions = []
    for start in range(0, len(data["source"]), batch_size):
        tokens = model.generate(
            data["source"][start : start + batch_size], dates.TARGET_LENGTH
        )
        predictions += dates.decode(tokens, dates.TARGET_VOCABULARY)
    correct = [p == t for p, t in zip(predictions, data["iso"])]
    return float(np.mean(correct)), predictions


def print_table(texts, targets, predictions, rows=12):
    width = max(len(t) for t in texts[:rows]) + 2
    print(f"\n{'input':<{width}}{'prediction':<13}{'expected':<12}ok")
    for text, target, prediction in list(zip(texts, targets, predictions))[
        :rows
    ]:
        mark = "✓" if prediction == target else "✗"
        print(f"{text:<{width}}{prediction:<13}{target:<12}{mark}")


def save_heatmap(model, data, index, path):
    """Alignment heatmap of held-out example `index`."""
    source = data["source"][index : index + 1]
    tokens, attention = model.generate(
        source, dates.TARGET_LENGTH, return_attention=True
    )
    text = data["text"][index]
    output = dates.decode(tokens, dates.TARGET_VOCABULARY)[0]
    # The characters and the end token, if the model wrote one in time.
    labels = (list(output) + ["<end>"])[: dates.TARGET_LENGTH]
    weights = np.asarray(attention)[0, : len(labels), : len(text)]
    title = f"{text!r} → {output}"
    figure = plot_attention(weights, list(text), labels, title=title)
    figure.savefig(path, dpi=120)
    # The same alignments to explore in a browser, next to the picture.
    page = os.path.join(os.path.dirname(path), "attention.html")
    attention_html(weights, list(text), labels, path=page, title=title)
    return path


def export_generate(model, path):
    """SavedModel with a `generate` endpoint (greedy, int ids in and out)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "generate",
        lambda source: model.generate_function(source, dates.TARGET_LENGTH),
        input_signature=[keras.InputSpec(shape=(None, None), dtype="int32")],
    )
    archive.write_out(path, verbose=False)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--out", default="out/date_normalization")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--num-test", type=int, default=2000)
    parser.add_argument(
        "--time-budget", type=float, default=175.0, help="training seconds"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    settings["epochs"] = args.epochs or settings["epochs"]
    settings["num_train"] = args.num_train or settings["num_train"]
    num_test = 200 if args.quick else args.num_test
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    train, test = dates.load_data(
        settings["num_train"], num_test, seed=args.seed
    )
    print(
        f"{len(train['text'])} training / {len(test['text'])} held-out "
        f"dates in {dates.NUM_FORMATS} formats, e.g. {train['text'][:3]}"
    )
    model = Seq2Seq(
        len(dates.SOURCE_VOCABULARY),
        len(dates.TARGET_VOCABULARY),
        embedding_dim=settings["embedding_dim"],
        units=settings["units"],
        attention="bahdanau",
    )
    steps = settings["epochs"] * -(-settings["num_train"] // BATCH_SIZE)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(
                3e-3, decay_steps=steps, alpha=0.05
            )
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    inputs = {"source": train["source"], "target_in": train["target_in"]}
    start = time.perf_counter()
    history = model.fit(
        inputs,
        train["target_out"],
        batch_size=BATCH_SIZE,
        epochs=settings["epochs"],
        callbacks=[TimeBudget(args.time_budget)],
        verbose=2 if os.environ.get("CI") else 1,
    )
    training_seconds = time.perf_counter() - start

    accuracy, predictions = exact_match(model, test)
    print_table(test["text"], test["iso"], predictions)
    print(
        f"\nexact match on {len(test['iso'])} held-out dates: "
        f"{accuracy:.2%} after {training_seconds:.0f} s of training"
    )

    heatmap = save_heatmap(
        model, test, 0, os.path.join(args.out, "attention.png")
    )
    model_path = os.path.join(args.out, "date_normalization.keras")
    model.save(model_path)
    export_path = export_generate(model, os.path.join(args.out, "generate"))
    print(f"wrote {heatmap}, {model_path} and {export_path}/")
    return {
        "accuracy": accuracy,
        "history": history.history,  # per epoch: loss, token accuracy
        "training_seconds": training_seconds,
        "heatmap": heatmap,
        "model": model_path,
        "export": export_path,
    }


if __name__ == "__main__":
    main()
