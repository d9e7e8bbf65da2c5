"""Translate English to Spanish with attention, then serve it as strings.

Trains `keras_attention.models.Transformer` (or the RNN `Seq2Seq` with
`--model seq2seq`) on the toy English → Spanish grammar (adjectives move
after the noun and agree with it: "the red house" → "la casa roja"), or on
a real tab-separated corpus with `--data FILE.tsv` (the Anki/Tatoeba
`spa.txt` format: English, a tab, Spanish, then anything). WordPiece
vocabularies are learned on the fly with tensorflow-text (cased, so the
translations come out cased). Reports sacreBLEU and chrF of greedy and beam
search on held-out pairs, plots the cross-attention of one translation,
exports a string-in/string-out SavedModel and reloads it in a fresh Python
process that imports only tensorflow and tensorflow_text. With
`--export-litert` it also writes `translate.tflite`, the whole greedy loop
for a phone (`export_generator`), and checks it in the LiteRT interpreter.

    python examples/translate.py [--quick] [--out DIR] [--data FILE.tsv]
        [--model transformer|seq2seq] [--minutes M] [--epochs N]
        [--export-litert]

With `--data`, training stops after the epoch that reaches `--minutes`
(default 5). The recipe (`RECIPES`) is the one measured in
`docs/real_data.md`.
"""

import argparse
import os
import subprocess
import sys
import time

import quiet_start  # noqa: F401  (first: no TensorFlow start-up lines)

# isort: split
import keras
import matplotlib
import numpy as np
import sacrebleu

from keras_attention import text
from keras_attention import visualization
from keras_attention.callbacks import TimeLimit
from keras_attention.datasets import load_tsv_pairs
from keras_attention.datasets import toy_translation
from keras_attention.export import export_generator
from keras_attention.export import export_translator
from keras_attention.models import Seq2Seq
from keras_attention.models import Transformer

matplotlib.use("Agg")

# The recipes that work on a few thousand real sentence pairs in minutes on
# 2 CPU cores (see docs/real_data.md); `--quick` shrinks them.
RECIPES = {
    "transformer": {
        "model": dict(num_layers=2, hidden_dim=256, num_heads=4,
                      intermediate_dim=512, dropout=0.1),
        "learning_rate": 5e-4,
    },
    "seq2seq": {
        "model": dict(embedding_dim=256, units=256, dropout=0.2),
        "learning_rate": 1e-3,
    },
}  # fmt: skip
QUICK = {
    "transformer": dict(num_layers=1, hidden_dim=32, num_heads=2,
                        intermediate_dim=64),
    "seq2seq": dict(embedding_dim=16, units=32),
}  # fmt: skip


def load_pairs(args):
    if args.data:
        sources, targets = load_tsv_pairs(args.data, skip_malformed=True)
    else:
        sources, targets = toy_translation(args.pairs, seed=0)
    order = np.random.default_rng(0).permutation(len(sources))
    sources = [sources[i] for i in order]
    targets = [targets[i] for i in order]
    held_out = min(1000, len(sources) // 10)
    return (
        (sources[held_out:], targets[held_out:]),
        (sources[:held_out], targets[:held_out]),
    )


def build_model(args, tokenizers, max_length):
    sizes = [tokenizer.vocabulary_size for tokenizer in tokenizers]
    recipe = RECIPES[args.model]
    options = {**recipe["model"], **(QUICK[args.model] if args.quick else {})}
    if args.model == "transformer":
        model = Transformer(*sizes, max_length=max_length + 1, **options)
    else:
        model = Seq2Seq(*sizes, **options)
    model.compile(
        optimizer=keras.optimizers.Adam(recipe["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=text.PAD_ID
        ),
    )
    return model


def translate(model, tokenizers, sources, max_length, method="greedy"):
    source_tokenizer, target_tokenizer = tokenizers
    outputs = []
    for start in range(0, len(sources), 250):
        ids = source_tokenizer(sources[start : start + 250], max_length)
        tokens = model.generate(ids, max_length, method=method)
        outputs += [
            s.decode() for s in target_tokenizer.detokenize(tokens).numpy()
        ]
    return outputs


def tokens_of(tokenizer, ids):
    return [t.decode() for t in tokenizer.id_to_token(ids).numpy()]


def plot_cross_attention(model, tokenizers, sentence, max_length, out):
    """For one translation: the Transformer's cross-attention heads (last
    decoder block) or the RNN's alignments as a picture, and every layer's
    attention as an explorer page (`attention.html`)."""
    source_tokenizer, target_tokenizer = tokenizers
    source = np.asarray(source_tokenizer([sentence], max_length))
    tokens = np.asarray(model.generate(source, max_length))
    length = int(np.sum(tokens > 0))
    source = source[:, : int(np.sum(source > 0))]  # no padding: one example
    target_in = np.concatenate([[[text.START_ID]], tokens[:, : length - 1]], 1)
    labels = (
        tokens_of(source_tokenizer, source[0]),
        tokens_of(target_tokenizer, tokens[0, :length]),
    )
    weights = visualization.attention_weights(
        model, {"source": source, "target_in": target_in}
    )
    weights = {name: w[0] for name, w in weights.items()}  # (H, Tq, Tk)
    title = f"Cross-attention for {sentence!r}"
    last = list(weights)[-1]  # the last cross-attention, or the alignments
    fig = visualization.plot_heads(weights[last], *labels, title=title)
    fig.savefig(os.path.join(out, "translate_heads.png"), dpi=110)
    visualization.attention_html(
        weights, *labels, path=os.path.join(out, "attention.html"),
        title=f"{sentence} → {' '.join(labels[1])}",
    )  # fmt: skip


RELOAD = """
import sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the WordPiece ops)
translator = tf.saved_model.load(sys.argv[1])
outputs = translator.translate(tf.constant(sys.argv[2:]))
pairs = zip(sys.argv[2:], outputs["translation"], outputs["truncated"])
for s, t, cut in pairs:
    print(f"  {s!r} -> {t.numpy().decode()!r}", "(truncated)" * bool(cut))
"""


def scores(model, tokenizers, test, max_length):
    """sacreBLEU and chrF of greedy and beam search on the held-out pairs."""
    results, hypotheses = {}, {}
    for method in ("greedy", "beam"):
        start = time.perf_counter()
        hypotheses[method] = translate(
            model, tokenizers, test[0], max_length, method
        )
        results[f"{method}_seconds"] = time.perf_counter() - start
        results[f"bleu_{method}"] = sacrebleu.corpus_bleu(
            hypotheses[method], [test[1]]
        ).score
        results[f"chrf_{method}"] = sacrebleu.corpus_chrf(
            hypotheses[method], [test[1]]
        ).score
    exact = np.mean([h == t for h, t in zip(hypotheses["beam"], test[1])])
    results["exact_match"] = float(exact)
    return results, hypotheses["beam"]


def export_litert(model, tokenizers, test, max_length, args):
    """Write `translate.tflite` (the whole greedy loop, batch 1) and check
    that LiteRT's interpreter gives `generate`'s tokens on held-out
    sentences."""
    from ai_edge_litert.interpreter import Interpreter

    path = export_generator(
        model, os.path.join(args.out, "translate.tflite"),
        max_length=max_length, source_length=max_length,
    )  # fmt: skip
    run = Interpreter(model_path=path).get_signature_runner()
    sources = np.asarray(tokenizers[0](test[0][:20], max_length=max_length))
    tokens = np.concatenate(
        [run(source=row[None])["tokens"] for row in sources]
    )
    same = float(
        np.mean(
            (tokens == np.asarray(model.generate(sources, max_length))).all(1)
        )
    )
    size = os.path.getsize(path) / 2**20
    print(
        f"wrote {path} ({size:.1f} MiB); LiteRT gives generate's tokens on "
        f"{same:.0%} of {len(sources)} held-out sentences"
    )
    if same < 1.0:
        raise SystemExit("the LiteRT file differs from generate")
    return {"litert_path": path, "litert_same_tokens": same}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--out", default="out/translate")
    parser.add_argument("--data", help="a source<TAB>target file instead")
    parser.add_argument(
        "--model", choices=sorted(RECIPES), default="transformer"
    )
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument(
        "--export-litert",
        action="store_true",
        help="also write translate.tflite (greedy, builtin ops) and check "
        "it against generate in the LiteRT interpreter",
    )
    args = parser.parse_args(argv)
    args.pairs = args.pairs or (2000 if args.quick else 30000)
    epochs = args.epochs or (1 if args.quick else 100 if args.data else 2)
    minutes = args.minutes or (5.0 if args.data else None)
    keras.utils.set_random_seed(0)
    os.makedirs(args.out, exist_ok=True)
    max_length = 40 if args.data else 24

    train, test = load_pairs(args)
    print(f"{len(train[0])} training pairs, {len(test[0])} held out")
    size = 300 if args.quick else 8000 if args.data else 1000
    tokenizers = tuple(
        text.Tokenizer(
            text.build_vocabulary(texts, size, lower_case=False),
            lower_case=False,
        )
        for texts in train
    )
    print(
        "vocabularies: "
        f"{tokenizers[0].vocabulary_size} source, "
        f"{tokenizers[1].vocabulary_size} target WordPiece tokens"
    )
    model = build_model(args, tokenizers, max_length)
    batches = text.translation_batches(
        *train, *tokenizers, batch_size=64, max_length=max_length
    )
    limit = TimeLimit(minutes and minutes * 60)
    start = time.perf_counter()
    history = model.fit(
        batches, epochs=epochs, callbacks=[limit], shuffle=False, verbose=1
    )  # the batches are reshuffled every epoch
    train_seconds = time.perf_counter() - start

    results, hypotheses = scores(model, tokenizers, test, max_length)
    print(
        f"\ntraining: {len(limit.epoch_seconds)} epochs, {train_seconds:.0f} s"
    )
    print(f"on {len(test[0])} held-out pairs (sacreBLEU, chrF):")
    for method in ("greedy", "beam"):
        print(
            f"  {method:6s} BLEU {results[f'bleu_{method}']:5.1f}  "
            f"chrF {results[f'chrf_{method}']:5.1f}  "
            f"({results[f'{method}_seconds']:.1f} s)"
        )
    print(f"  exact match (beam): {results['exact_match']:.3f}")
    print(f"\n{'source':46s} beam search (✗: differs from the reference)")
    for s, t, h in list(zip(*test, hypotheses))[:8]:
        mark = "" if h == t else f"  ✗ reference: {t}"
        print(f"{s:46s} {h}{mark}")

    plot_cross_attention(model, tokenizers, test[0][0], max_length, args.out)
    model.save(os.path.join(args.out, "translate.keras"))
    export_path = os.path.join(args.out, "translator")
    export_translator(model, *tokenizers, export_path, method="beam")
    print(f"\nexported {export_path}; reloading in a fresh process:")
    reload = subprocess.run(
        [sys.executable, "-c", RELOAD, export_path, *test[0][:2]],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    print(reload.stdout.rstrip() or reload.stderr[-2000:])
    on_device = {}
    if args.export_litert:
        on_device = export_litert(model, tokenizers, test, max_length, args)
    return {
        **on_device,
        **results,
        "train_seconds": train_seconds,
        "epochs": len(limit.epoch_seconds),
        "loss": history.history["loss"],  # per epoch
        # ln(this) is the loss of a uniform guess, where training starts.
        "target_vocabulary_size": tokenizers[1].vocabulary_size,
        "reload_output": reload.stdout,
    }


if __name__ == "__main__":
    main()
