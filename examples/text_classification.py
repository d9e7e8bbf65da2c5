"""Text classification: where does attention pooling look?

A generated sentiment task: reviews of 8 to 20 words where most words are
neutral filler ("the plot was about a man ...") and one or three sentiment
words decide the label by majority ("great", "boring", ...). A "not" just
before a sentiment word flips it ("not great" is negative), so the model has
to read word pairs, not just spot words.

`keras_attention.models.TransformerClassifier(pooling="attention")` encodes
the words with a Transformer encoder and pools them with a learned query
(`AttentionPooling`): the pooling weights `pooling_weights(tokens)` say how
much each position counted in the sentence vector. (They weigh encoder
outputs, which self-attention has already mixed with their context, so they
hint at, but do not prove, which words decided.) Trains with `fit` (Keras
progress bar), reports held-out accuracy (overall, with and without
negation) and the share of pooling attention that lands on the deciding
words, and writes to `--out`:

- `pooling_attention.png`: pooling weights over the words of a few held-out
  reviews;
- `attention.html`: every block's self-attention and the pooling of one
  review, in an interactive page;
- `text_classifier.keras`: the trained model.

    python examples/text_classification.py [--quick] [--out DIR]
"""

import argparse
import os
import time

import quiet_start  # noqa: F401  (first: no TensorFlow start-up lines)

# isort: split
import keras
import matplotlib
import numpy as np

from keras_attention import visualization
from keras_attention.models import TransformerClassifier

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

POSITIVE = ["great", "wonderful", "excellent", "loved", "brilliant", "fun"]
NEGATIVE = ["awful", "boring", "terrible", "hated", "dull", "weak"]
NEGATION = "not"
FILLER = (
    "the a movie film plot story actors music ending it was is and but "
    "with about of i we this that scene director man woman city night "
    "very quite really some long short first second camera dialogue"
).split()
VOCABULARY = ["[PAD]", "[START]", "[END]", "[UNK]", NEGATION]
VOCABULARY += POSITIVE + NEGATIVE + FILLER
INDEX = {word: i for i, word in enumerate(VOCABULARY)}
MAX_WORDS = 20
LABELS = ["negative", "positive"]

FULL = {"num_train": 20000, "epochs": 6, "hidden_dim": 64}
QUICK = {"num_train": 3000, "epochs": 3, "hidden_dim": 32}


def generate(num_examples, seed=0):
    """`(texts, labels, negated)`: reviews, 0/1 labels, has-a-"not" flags."""
    rng = np.random.default_rng(seed)
    texts, labels, negated = [], [], []
    for _ in range(num_examples):
        # 8 to 14 filler words, so up to three 2-word phrases still fit.
        size = rng.integers(8, MAX_WORDS - 5)
        words = [str(w) for w in rng.choice(FILLER, size=size)]
        polarity, has_not = 0, False
        for _ in range(rng.choice([1, 3])):
            positive = rng.random() < 0.5
            word = str(rng.choice(POSITIVE if positive else NEGATIVE))
            phrase = [word]
            if rng.random() < 0.3:  # "not great" is negative
                phrase, positive, has_not = [NEGATION, word], not positive, True
            polarity += 1 if positive else -1
            at = rng.integers(0, len(words) + 1)
            words[at:at] = phrase
        texts.append(" ".join(words))
        labels.append(int(polarity > 0))
        negated.append(has_not)
    return texts, np.array(labels, "int32"), np.array(negated)


def encode(texts):
    """Word ids `(N, MAX_WORDS)`, padded with 0."""
    ids = np.zeros((len(texts), MAX_WORDS), "int32")
    for row, text in enumerate(texts):
        tokens = [INDEX.get(w, 3) for w in text.split()][:MAX_WORDS]
        ids[row, : len(tokens)] = tokens
    return ids


def deciding(token):
    """Sentiment words and negations: the words that set the label."""
    word = VOCABULARY[token]
    return word in POSITIVE or word in NEGATIVE or word == NEGATION


def plot_pooling(texts, weights, probabilities, labels, path):
    """One bar chart per review: the pooling weight of each word."""
    fig, axes = plt.subplots(
        len(texts), 1, figsize=(9, 2.1 * len(texts)), layout="constrained"
    )
    for ax, text, w, p, label in zip(
        axes, texts, weights, probabilities, labels
    ):
        words = text.split()
        colors = ["C3" if deciding(INDEX[word]) else "C0" for word in words]
        ax.bar(range(len(words)), w[: len(words)], color=colors)
        ax.set_xticks(range(len(words)))
        ax.set_xticklabels(words, rotation=45, ha="right", fontsize=9)
        ax.set_ylabel("pooling weight")
        ax.set_ylim(0, max(0.3, 1.15 * float(w.max())))
        ax.set_title(
            f"true: {LABELS[label]}, predicted P(positive) = {p:.2f}",
            fontsize=10,
        )
    fig.suptitle(
        "Where the attention pooling looks (red: sentiment words and 'not')"
    )
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_explorer(model, review, out):
    """Every encoder block's self-attention and the pooling for one review,
    as an interactive page (`attention.html`)."""
    words = review.split()
    tokens = encode([review])[:, : len(words)]  # no padding: one review
    weights = visualization.attention_weights(model, tokens)
    weights = {name: w[0] for name, w in weights.items()}  # (H, Tq, Tk)
    path = os.path.join(out, "attention.html")
    visualization.attention_html(weights, words, path=path, title=review)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--out", default="out/text_classification")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    train_texts, train_labels, _ = generate(settings["num_train"], args.seed)
    test_texts, test_labels, test_negated = generate(1000, args.seed + 7919)
    print(f"{len(train_texts)} training reviews, e.g. {train_texts[0]!r}")
    hidden_dim = settings["hidden_dim"]
    model = TransformerClassifier(
        len(VOCABULARY),
        num_classes=2,
        num_layers=1,
        hidden_dim=hidden_dim,
        num_heads=4,
        intermediate_dim=2 * hidden_dim,
        dropout=0.1,
        max_length=MAX_WORDS,
        pooling="attention",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        encode(train_texts),
        train_labels,
        batch_size=64,
        epochs=settings["epochs"],
        verbose=2 if os.environ.get("CI") else 1,
    )
    training_seconds = time.perf_counter() - start

    tokens = encode(test_texts)
    logits = model.predict(tokens, verbose=0)
    probabilities = keras.ops.convert_to_numpy(
        keras.ops.softmax(logits, axis=-1)
    )[:, 1]
    correct = (logits.argmax(-1) == test_labels).astype("float32")
    weights = keras.ops.convert_to_numpy(model.pooling_weights(tokens))
    on_deciding = np.vectorize(deciding)(tokens) & (tokens > 0)
    share = float((weights * on_deciding).sum(-1).mean())
    baseline = float(on_deciding.sum(-1).mean() / (tokens > 0).sum(-1).mean())
    results = {
        "accuracy": float(correct.mean()),
        "accuracy_with_not": float(correct[test_negated].mean()),
        "accuracy_without_not": float(correct[~test_negated].mean()),
        "attention_on_deciding_words": share,
        "uniform_share": baseline,
        "training_seconds": training_seconds,
    }
    print(f"\n{'held-out reviews (1000)':<28}{'accuracy':>10}")
    for name, key in [
        ("all", "accuracy"),
        ("with a negation (not ...)", "accuracy_with_not"),
        ("without negation", "accuracy_without_not"),
    ]:
        print(f"{name:<28}{results[key]:>10.1%}")
    print(
        f"\npooling attention on sentiment words and 'not': {share:.0%} "
        f"(uniform attention would give {baseline:.0%}); "
        f"{training_seconds:.0f} s of training"
    )
    shown = [i for i in range(40) if test_negated[i]][:2]
    shown += [i for i in range(40) if not test_negated[i]][:2]
    plot_pooling(
        [test_texts[i] for i in shown],
        weights[shown],
        probabilities[shown],
        test_labels[shown],
        os.path.join(args.out, "pooling_attention.png"),
    )
    write_explorer(model, test_texts[shown[0]], args.out)
    model.save(os.path.join(args.out, "text_classifier.keras"))
    print(f"plots, attention.html and model written to {args.out}")
    return results


if __name__ == "__main__":
    main()
