"""Quick start: attention finds the one token that matters.

Task: each sequence holds random tokens and one "key" token (`1..4`) at a
random position; the label is that key. A bag-of-words model could solve it
too, but here we watch *attention* do it: an `Attention` layer over the
embedded tokens, then `AttentionPooling` (a learned query) to a vector, then a
classifier. After a few epochs the pooling weights concentrate on the key
token, which the script prints for one example.

    python examples/quickstart.py [--quick] [--out DIR]
"""

import argparse
import os

import quiet_start  # noqa: F401  (first: no TensorFlow start-up lines)

# isort: split
import keras
import numpy as np

import keras_attention as ka

NUM_KEYS = 4  # key tokens 1..4; filler tokens 5..VOCAB-1; 0 is padding
VOCAB = 32


def make_data(n, length, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(NUM_KEYS + 1, VOCAB, size=(n, length))
    lengths = rng.integers(length // 2, length + 1, size=n)
    tokens[np.arange(length)[None, :] >= lengths[:, None]] = 0  # padding
    labels = rng.integers(0, NUM_KEYS, size=n)
    where = (rng.random(n) * lengths).astype(int)
    tokens[np.arange(n), where] = labels + 1
    return tokens.astype("int32"), labels.astype("int32")


def build_model(length):
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCAB, 32, mask_zero=True)(tokens)
    x = ka.Attention(score="scaled_dot", name="self_attention")(x, x)
    pooled = ka.AttentionPooling(score="additive", name="pooling")(x)
    logits = keras.layers.Dense(NUM_KEYS, name="classifier")(pooled)
    return keras.Model(tokens, logits)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--out", default="out/quickstart")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    length, n = 12, (512 if args.quick else 4096)
    epochs = 2 if args.quick else 8

    x_train, y_train = make_data(n, length, seed=0)
    x_test, y_test = make_data(512, length, seed=1)
    model = build_model(length)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=1)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"\nheld-out accuracy: {accuracy:.3f}")

    # Where does the pooling query look? Rebuild the path up to it.
    encoder = keras.Model(model.input, model.get_layer("self_attention").output)
    pooling = model.get_layer("pooling")
    sample = x_test[:1]
    hidden = encoder(sample)
    _, weights = pooling(hidden, mask=sample != 0, return_attention_scores=True)
    weights = np.asarray(weights)[0]
    print("\ntoken  weight")
    for token, weight in zip(sample[0], weights):
        if token:
            marker = "  <- key" if token <= NUM_KEYS else ""
            print(f"{token:5d}  {weight:.3f}{marker}")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "quickstart.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    same = np.allclose(
        restored.predict(x_test, verbose=0),
        model.predict(x_test, verbose=0),
        atol=1e-6,
    )
    print(f"\nsaved {path}; reloaded outputs identical: {same}")
    return accuracy


if __name__ == "__main__":
    main()
