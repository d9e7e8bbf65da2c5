"""Subprocess body of the cross-backend test: same weights, every backend.

    KERAS_BACKEND=NAME python tests/scripts/backend_worker.py DIR

Builds a `Transformer`, a `Seq2Seq`, a chunked `MultiHeadAttention`, one
causal layer of each kind of the attention family and a latent-attention
`Transformer`.
The first backend to run (no `DIR/*.weights.h5` yet) saves their weights;
every run loads them and writes `DIR/NAME.npz`: logits, attention outputs
and tokens of greedy search, beam search and seeded sampling.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

SOURCE = np.array([[5, 6, 7, 8, 2, 0], [9, 4, 2, 0, 0, 0]], "int32")
TARGET_IN = np.array([[1, 5, 6, 7], [1, 9, 4, 0]], "int32")
X = np.random.default_rng(0).normal(size=(2, 11, 8)).astype("float32")
# Transformers of the other kinds, each decoding through its own cache
# (latent, differential's two maps, linear's recurrent state).
KINDS = {
    "latent": {"kv_latent_dim": 4, "rotary_dim": 2},
    "differential": {},
    "linear": {"feature_map": "favor", "seed": 1},
}


def build():
    import keras_attention as ka
    from keras_attention.models import Seq2Seq
    from keras_attention.models import Transformer

    keras.utils.set_random_seed(0)
    transformer = Transformer(
        12, 12, num_layers=2, hidden_dim=8, num_heads=2,
        intermediate_dim=16, dropout=0.0,
    )  # fmt: skip
    seq2seq = Seq2Seq(12, 12, embedding_dim=6, units=5)
    x = keras.Input((None, 8))
    attention = keras.Model(
        x,
        ka.MultiHeadAttention(
            4, 2, num_key_value_heads=2, chunk_size=3, rotary_max_wavelength=50
        )(x, x, use_causal_mask=True),
    )
    parts = {"transformer": transformer, "seq2seq": seq2seq,
             "attention": attention}  # fmt: skip
    # The attention family: one causal layer each, and a latent Transformer
    # that decodes with its latent cache.
    family = {
        "sinks_qk_norm": ka.MultiHeadAttention(
            4, 2, use_sinks=True, qk_norm="rms", chunk_size=3
        ),
        "latent": ka.MultiHeadLatentAttention(
            2, 4, kv_latent_dim=6, rotary_dim=2, chunk_size=3
        ),
        "differential": ka.DifferentialAttention(2, 2, chunk_size=3),
        "linear": ka.LinearAttention(2, 2, feature_map="favor", seed=1),
    }
    for name, layer in family.items():
        parts[f"{name}_attention"] = keras.Model(
            x, layer(x, x, use_causal_mask=True)
        )
    for kind, options in KINDS.items():
        parts[f"{kind}_transformer"] = Transformer(
            12, 12, num_layers=1, hidden_dim=8, num_heads=2,
            intermediate_dim=16, dropout=0.0, attention=kind,
            attention_options=options,
        )  # fmt: skip
    return parts


def main():
    folder = sys.argv[1]
    parts = build()
    for name, part in parts.items():
        path = os.path.join(folder, f"{name}.weights.h5")
        if not os.path.exists(path):
            part.save_weights(path)
        part.load_weights(path)
    # predict_on_batch: one compiled forward pass (called eagerly, JAX
    # compiles each op on its own, 4x slower here).
    results = {
        name: part.predict_on_batch(X)
        for name, part in parts.items()
        if name.endswith("attention")
    }
    # Beam search and sampling are the same keras.ops code in every model:
    # the Transformer runs all three methods, Seq2Seq greedy and beam, the
    # other kinds' Transformers greedy (through their own caches).
    methods = {
        "greedy": {},
        "beam": {"method": "beam", "beam_width": 3},
        "sample": {"method": "sample", "seed": 11, "temperature": 1.5},
    }
    runs = {
        "transformer": ("greedy", "beam", "sample"),
        "seq2seq": ("greedy", "beam"),
        **{f"{kind}_transformer": ("greedy",) for kind in KINDS},
    }
    for name, chosen in runs.items():
        model = parts[name]
        inputs = {"source": SOURCE, "target_in": TARGET_IN}
        results[f"{name}_logits"] = model.predict_on_batch(inputs)
        for method in chosen:
            results[f"{name}_{method}"] = model.generate(
                SOURCE, 6, **methods[method]
            )
    np.savez(
        os.path.join(folder, f"{keras.config.backend()}.npz"),
        **{k: keras.ops.convert_to_numpy(v) for k, v in results.items()},
    )


if __name__ == "__main__":
    main()
