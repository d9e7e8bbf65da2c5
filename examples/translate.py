"""Translate English to Spanish with a Transformer, then serve it as strings.

Trains `keras_attention.models.Transformer` on the toy English → Spanish
grammar (adjectives move after the noun and agree with it: "the red house"
→ "la casa roja"), or on a real tab-separated corpus with `--data FILE.tsv`
(Anki/Tatoeba format). WordPiece vocabularies are learned on the fly with
tensorflow-text. Reports exact match and BLEU on held-out pairs, plots the
cross-attention heads of one translation, exports a string-in/string-out
SavedModel and reloads it in a fresh Python process that imports only
tensorflow and tensorflow_text.

    python examples/translate.py [--quick] [--out DIR] [--data FILE.tsv]
"""

import argparse
import collections
import math
import os
import subprocess
import sys
import time

import quiet_start  # noqa: F401  (first: no TensorFlow start-up lines)

# isort: split
import keras
import matplotlib
import numpy as np
import tensorflow as tf

from keras_attention import text
from keras_attention import visualization
from keras_attention.datasets import load_tsv_pairs
from keras_attention.datasets import toy_translation
from keras_attention.export import export_translator
from keras_attention.models import Transformer

matplotlib.use("Agg")


def corpus_bleu(hypotheses, references, max_order=4):
    """Corpus BLEU-4 in [0, 100] with the brevity penalty (Papineni 2002).

    Whitespace-tokenized, one reference per hypothesis, no smoothing. Our own
    small implementation, used when `sacrebleu` is not installed.
    """
    matches, totals = [0] * max_order, [0] * max_order
    hyp_length = ref_length = 0
    for hypothesis, reference in zip(hypotheses, references):
        hyp, ref = hypothesis.split(), reference.split()
        hyp_length, ref_length = hyp_length + len(hyp), ref_length + len(ref)
        for n in range(1, max_order + 1):
            hyp_ngrams = collections.Counter(
                tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1)
            )
            ref_ngrams = collections.Counter(
                tuple(ref[i : i + n]) for i in range(len(ref) - n + 1)
            )
            matches[n - 1] += sum((hyp_ngrams & ref_ngrams).values())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals))
    brevity = min(0.0, 1 - ref_length / max(hyp_length, 1))
    return 100 * math.exp(log_precision / max_order + brevity)


def bleu(hypotheses, references):
    """(score, name): sacrebleu's corpus BLEU if installed, else ours."""
    try:
        import sacrebleu
    except ImportError:
        return corpus_bleu(hypotheses, references), "BLEU (own corpus BLEU-4)"
    return (
        sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "BLEU (sacrebleu)",
    )


def load_pairs(args):
    if args.data:
        sources, targets = load_tsv_pairs(args.data, skip_malformed=True)
        sources = [s.lower() for s in sources]
        targets = [t.lower() for t in targets]
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


def make_dataset(sources, targets, tokenizers, max_length, batch_size):
    source_tokenizer, target_tokenizer = tokenizers

    def prepare(source, target):
        source = source_tokenizer(source, max_length=max_length)
        target = target_tokenizer(target, max_length=max_length + 1)
        inputs = {"source": source, "target_in": target[:, :-1]}
        target_out = target[:, 1:]
        # Weight 1 on real target tokens: the loss and the accuracy skip the
        # padding (and the position after the end token).
        weights = tf.cast(tf.not_equal(target_out, text.PAD_ID), "float32")
        return inputs, target_out, weights

    dataset = tf.data.Dataset.from_tensor_slices((sources, targets))
    dataset = dataset.shuffle(len(sources), seed=0).batch(batch_size)
    return dataset.map(prepare).prefetch(tf.data.AUTOTUNE)


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


def plot_cross_attention(model, tokenizers, sentence, max_length, path):
    source_tokenizer, target_tokenizer = tokenizers
    source = source_tokenizer([sentence], max_length)
    tokens = model.generate(source, max_length)
    length = int(np.sum(np.asarray(tokens) > 0))
    target_in = tf.concat([[[text.START_ID]], tokens[:, : length - 1]], 1)
    memory = model.encoder(source)
    x = model.target_embedding(target_in)
    _, weights = model.decoder_stack(
        x,
        memory,
        encoder_outputs_mask=source != 0,
        return_attention_scores=True,
    )
    heads = np.asarray(weights[-1]["cross_attention"])[0]  # (H, T, S)
    source_length = int(np.sum(np.asarray(source) > 0))
    source_tokens = [
        t.decode()
        for t in source_tokenizer.id_to_token(source[0, :source_length]).numpy()
    ]
    target_tokens = [
        t.decode()
        for t in target_tokenizer.id_to_token(tokens[0, :length]).numpy()
    ]
    fig = visualization.plot_heads(
        heads[:, :length, :source_length],
        source_tokens,
        target_tokens,
        title=f"Cross-attention heads of the last decoder block: {sentence!r}",
    )
    fig.savefig(path, dpi=110)
    return heads


RELOAD = """
import sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the WordPiece ops)
translator = tf.saved_model.load(sys.argv[1])
sentences = tf.constant(sys.argv[2:])
for s, t in zip(sys.argv[2:], translator.translate(sentences)["translation"]):
    print(f"  {s!r} -> {t.numpy().decode()!r}")
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--out", default="out/translate")
    parser.add_argument("--data", help="a source<TAB>target file instead")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args(argv)
    args.pairs = args.pairs or (2000 if args.quick else 30000)
    epochs = args.epochs or (1 if args.quick else 2)
    keras.utils.set_random_seed(0)
    os.makedirs(args.out, exist_ok=True)
    max_length = 24

    (train_src, train_tgt), (test_src, test_tgt) = load_pairs(args)
    print(f"{len(train_src)} training pairs, {len(test_src)} held out")
    vocab_size = 300 if args.quick else 1000
    tokenizers = (
        text.Tokenizer(text.build_vocabulary(train_src, vocab_size)),
        text.Tokenizer(text.build_vocabulary(train_tgt, vocab_size)),
    )
    print(
        "vocabularies: "
        f"{tokenizers[0].vocabulary_size} source, "
        f"{tokenizers[1].vocabulary_size} target WordPiece tokens"
    )
    model = Transformer(
        tokenizers[0].vocabulary_size,
        tokenizers[1].vocabulary_size,
        num_layers=2,
        hidden_dim=64 if args.quick else 128,
        num_heads=4,
        intermediate_dim=128 if args.quick else 256,
        dropout=0.1,
        max_length=max_length + 1,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=text.PAD_ID
        ),
        weighted_metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ],
    )
    train = make_dataset(train_src, train_tgt, tokenizers, max_length, 64)
    start = time.perf_counter()
    model.fit(train, epochs=epochs, shuffle=False, verbose=1)
    train_seconds = time.perf_counter() - start

    hypotheses = translate(model, tokenizers, test_src, max_length)
    exact = np.mean([h == t for h, t in zip(hypotheses, test_tgt)])
    score, name = bleu(hypotheses, test_tgt)
    print(f"\ntraining time: {train_seconds:.0f} s")
    print(f"exact match on {len(test_src)} held-out pairs: {exact:.3f}")
    print(f"{name}: {score:.1f}")
    print(f"\n{'source':46s} prediction (✗: differs from the reference)")
    for s, t, h in list(zip(test_src, test_tgt, hypotheses))[:8]:
        mark = "" if h == t else f"  ✗ reference: {t}"
        print(f"{s:46s} {h}{mark}")

    sentence = test_src[0]
    plot_cross_attention(
        model,
        tokenizers,
        sentence,
        max_length,
        os.path.join(args.out, "translate_heads.png"),
    )
    model.save(os.path.join(args.out, "translate.keras"))
    export_path = os.path.join(args.out, "translator")
    export_translator(
        model, *tokenizers, export_path, max_length=max_length, method="beam"
    )
    print(f"\nexported {export_path}; reloading in a fresh process:")
    reload = subprocess.run(
        [sys.executable, "-c", RELOAD, export_path, *test_src[:2]],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    print(reload.stdout.rstrip() or reload.stderr[-2000:])
    return {
        "exact_match": float(exact),
        "bleu": score,
        "train_seconds": train_seconds,
        "reload_output": reload.stdout,
    }


if __name__ == "__main__":
    main()
