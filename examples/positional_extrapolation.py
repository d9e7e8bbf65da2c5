"""Which positional encodings extrapolate? Train short, test long.

Attention itself ignores order: a Transformer knows positions only through
what we add (lecture notes: sinusoidal or learned position vectors added to
the embeddings) or through what the attention scores see (rotary angles of
the queries and keys, ALiBi's distance penalty, T5's learned bias per
distance bucket). This example trains the same small causal Transformer with
each of the five, on sequences of at most 12 tokens, and tests it on
sequences of up to 24.

The task needs positions and nothing else: at every step, output the token
seen `LAG` steps earlier (`y_t = x_{t-LAG}`, random tokens, so content
cannot help). A model that has learned "look `LAG` back" solves any length;
one that has learned "position 7 looks at position 5" cannot go past the
positions it saw. Every model is `keras_attention.TokenAndPositionEmbedding`
→ `TransformerEncoder(mask_mod=Causal())` → a dense layer; only the
positional scheme differs.

Writes `positional_extrapolation.png` (token accuracy by sequence length,
one curve per encoding) to `--out` and prints the table.

    python examples/positional_extrapolation.py [--quick] [--out DIR]
"""

import argparse
import os
import time

import quiet_start  # noqa: F401  (first: no TensorFlow start-up lines)

# isort: split
import keras
import matplotlib
import numpy as np

import keras_attention as ka
from keras_attention import mods

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

SCHEMES = ("sinusoidal", "learned", "rotary", "alibi", "t5")
FULL = {"train_length": 12, "test_length": 24, "num_train": 8000,
        "epochs": 6, "num_test": 200}  # fmt: skip
QUICK = {"train_length": 8, "test_length": 12, "num_train": 1000,
         "epochs": 2, "num_test": 20}  # fmt: skip
LAG, VOCAB, WIDTH, HEADS = 2, 16, 64, 4


def make_data(num, min_length, max_length, rng):
    """Padded tokens `(N, max_length)` and targets (0 where nothing to say)."""
    tokens = np.zeros((num, max_length), "int32")
    targets = np.zeros((num, max_length), "int32")
    for row, length in enumerate(rng.integers(min_length, max_length + 1, num)):
        seq = rng.integers(1, VOCAB, length)
        tokens[row, :length] = seq
        targets[row, LAG:length] = seq[:-LAG]
    return tokens, targets


def build(scheme, max_length):
    """Embedding → causal Transformer encoder → logits, for one scheme."""
    blocks = {
        "rotary": {"rotary_max_wavelength": 10000},
        "alibi": {"score_mod": mods.ALiBi()},
        "t5": {"score_mod": mods.RelativePositionBias(bidirectional=False)},
    }.get(scheme, {})
    tokens = keras.Input((None,), dtype="int32")
    x = ka.TokenAndPositionEmbedding(
        VOCAB,
        WIDTH,
        max_length=max_length,
        positional=scheme if scheme in ("sinusoidal", "learned") else None,
    )(tokens)
    x = ka.TransformerEncoder(
        2,
        num_heads=HEADS,
        intermediate_dim=2 * WIDTH,
        norm_first=True,
        mask_mod=mods.Causal(),
        **blocks,
    )(x)
    model = keras.Model(tokens, keras.layers.Dense(VOCAB)(x))
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=0
        ),
    )
    return model


def accuracy_by_length(model, config, rng):
    """Token accuracy (over the positions with a target) per length.

    One `predict` over every length, padded to the longest: the model is
    causal, so the padding after a sequence changes none of its outputs.
    """
    lengths = range(LAG + 2, config["test_length"] + 1)
    width = config["test_length"]
    batches = [make_data(config["num_test"], n, n, rng) for n in lengths]
    tokens = np.concatenate(
        [np.pad(t, ((0, 0), (0, width - t.shape[1]))) for t, _ in batches]
    )
    predicted = np.asarray(model.predict(tokens, verbose=0)).argmax(-1)
    result = {}
    for index, (length, (_, targets)) in enumerate(zip(lengths, batches)):
        rows = predicted[index * config["num_test"] :][: config["num_test"]]
        real = targets > 0
        result[length] = float((rows[:, :length] == targets)[real].mean())
    return result


def plot(results, config, path):
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for (name, curve), marker in zip(results.items(), "osd^v"):
        ax.plot(list(curve), list(curve.values()), marker=marker, label=name)
    ax.axvspan(
        config["train_length"] + 0.5,
        config["test_length"] + 0.5,
        color="grey",
        alpha=0.15,
        label="longer than training",
    )
    ax.set_xlabel("sequence length")
    ax.set_ylabel(f"token accuracy (output the token {LAG} back)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Trained on short sequences: which encodings extrapolate?")
    ax.legend(loc="lower left")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--out", default="out/positional_extrapolation")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(0)
    tokens, targets = make_data(
        config["num_train"], LAG + 2, config["train_length"], rng
    )
    results, seconds = {}, {}
    for scheme in SCHEMES:
        print(f"== {scheme}")
        keras.utils.set_random_seed(0)
        model = build(scheme, config["test_length"])
        start = time.perf_counter()
        model.fit(
            tokens, targets, batch_size=64, epochs=config["epochs"], verbose=1
        )
        seconds[scheme] = round(time.perf_counter() - start, 1)
        results[scheme] = accuracy_by_length(
            model, config, np.random.default_rng(1)
        )
    print(
        f"\ntoken accuracy by length (trained up to {config['train_length']})"
    )
    print("length " + "".join(f"{s:>11}" for s in SCHEMES))
    for length in results[SCHEMES[0]]:
        row = "".join(f"{results[s][length]:>10.0%} " for s in SCHEMES)
        seen = "" if length <= config["train_length"] else "  (unseen)"
        print(f"{length:>6} {row}{seen}")
    path = os.path.join(args.out, "positional_extrapolation.png")
    plot(results, config, path)
    print(f"training s {seconds}\nwrote {path}")
    return {"accuracy": results, "seconds": seconds}


if __name__ == "__main__":
    main()
