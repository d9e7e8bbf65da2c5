"""Benchmark: translation quality on a real corpus, ours vs two tutorials.

Trains four systems on the same pairs of a tab-separated corpus (Anki /
Tatoeba format, `english<TAB>spanish`), with the same WordPiece
tokenizers, batches (`text.translation_batches`, batch 64) and wall-clock
budget per system (`--budget` seconds, whole epochs, at most `--epochs`),
then translates the held-out pairs (the first `--held-out` of a seeded
shuffle) and scores them with sacreBLEU and chrF against the original,
cased references:

- `seq2seq`: `keras_attention.models.Seq2Seq` with its defaults and
  `dropout=0.2` (the recipe of docs/real_data.md);
- `transformer`: `keras_attention.models.Transformer` (2+2 blocks, 256
  wide), greedy and beam 4;
- `tutorial_rnn`: the TensorFlow `nmt_with_attention` tutorial's model,
  written from its architecture: bidirectional GRU encoder (outputs
  summed), GRU decoder started from zeros, one-head `MultiHeadAttention`
  over the encoder outputs + residual + layer norm, dense logits; Adam;
- `keras_io_transformer`: the keras.io "English-to-Spanish translation with
  a sequence-to-sequence Transformer" model (1+1 blocks, 256 wide, 8 heads,
  feed-forward 2048, dropout 0.5, RMSprop), decoded greedily as there, by
  re-running the model on the growing prefix.

With `--attention KIND,...` it trains only the Transformer, once per kind
of self-attention (`ATTENTIONS`: multi-head, with sinks and QK-norm,
latent, differential, linear), each under the same budget, as
`transformer_KIND`.

Prints one JSON line: per system the parameters, epochs run, seconds per
epoch, training seconds, BLEU and chrF (greedy, and beam for ours) and the
seconds to translate the held-out sentences.

    python benchmarks/real_translation.py --data spa.txt [--budget 300]
    python benchmarks/real_translation.py --quick   # generated toy corpus
    python benchmarks/real_translation.py --data spa.txt \
        --attention multi_head,sinks_qk_norm,latent,differential,linear
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import sacrebleu  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_attention import text  # noqa: E402
from keras_attention.callbacks import TimeLimit  # noqa: E402
from keras_attention.constants import END_ID  # noqa: E402
from keras_attention.constants import PAD_ID  # noqa: E402
from keras_attention.constants import START_ID  # noqa: E402
from keras_attention.datasets import load_tsv_pairs  # noqa: E402
from keras_attention.datasets import toy_translation  # noqa: E402
from keras_attention.models import Seq2Seq  # noqa: E402
from keras_attention.models import Transformer  # noqa: E402

MAX_LENGTH = 40  # ids per source / target sentence (covers the corpus)


def loss():
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=PAD_ID
    )


# === Ours ===


def seq2seq(source_vocab, target_vocab, quick):
    small = {"embedding_dim": 16, "units": 32} if quick else {}
    model = Seq2Seq(source_vocab, target_vocab, dropout=0.2, **small)
    model.compile(optimizer=keras.optimizers.Adam(), loss=loss())
    return model


# `--attention KIND`: the Transformer's self-attention, by name.
ATTENTIONS = {
    "multi_head": {},
    "sinks_qk_norm": {
        "attention_options": {"use_sinks": True, "qk_norm": "rms"}
    },
    "latent": {
        "attention": "latent",
        "attention_options": {"kv_latent_dim": 128},
    },
    "differential": {"attention": "differential"},
    "linear": {"attention": "linear"},
}


def transformer(source_vocab, target_vocab, quick, attention="multi_head"):
    model = Transformer(
        source_vocab,
        target_vocab,
        num_layers=2,
        hidden_dim=64 if quick else 256,
        num_heads=4,
        intermediate_dim=128 if quick else 512,
        dropout=0.1,
        max_length=MAX_LENGTH + 1,
        **ATTENTIONS[attention],
    )
    model.compile(optimizer=keras.optimizers.Adam(5e-4), loss=loss())
    return model


def ours_translate(model, source, method):
    options = {"method": method, "beam_width": 4} if method == "beam" else {}
    return model.generate(source, MAX_LENGTH, **options)


# === The TensorFlow nmt_with_attention tutorial's model ===


def tutorial_rnn(source_vocab, target_vocab, quick, units=256):
    if quick:
        units = 32
    source = keras.Input((None,), dtype="int32", name="source")
    target_in = keras.Input((None,), dtype="int32", name="target_in")
    context = keras.layers.Bidirectional(
        keras.layers.GRU(units, return_sequences=True), merge_mode="sum"
    )(keras.layers.Embedding(source_vocab, units, mask_zero=True)(source))
    rnn = keras.layers.GRU(units, return_sequences=True, return_state=True)
    embedding = keras.layers.Embedding(target_vocab, units, mask_zero=True)
    attention = keras.layers.MultiHeadAttention(num_heads=1, key_dim=units)
    norm = keras.layers.LayerNormalization()
    head = keras.layers.Dense(target_vocab)

    def decode(tokens, context, state=None, mask=None):
        x, state = rnn(embedding(tokens), initial_state=state)
        x = norm(x + attention(query=x, value=context, attention_mask=mask))
        return head(x), state

    # Training: the source padding mask travels with `context`.
    logits, _ = decode(target_in, context)
    model = keras.Model({"source": source, "target_in": target_in}, logits)
    model.compile(optimizer=keras.optimizers.Adam(), loss=loss())
    # Step-wise greedy decoding, one tf.function (the tutorial's loop).
    token = keras.Input((1,), dtype="int32")
    memory = keras.Input((None, units))
    state_in = keras.Input((units,))
    mask = keras.Input((1, None), dtype="bool")
    step_logits, state_out = decode(token, memory, state_in, mask)
    model.step = keras.Model(
        [token, memory, state_in, mask], [step_logits, state_out]
    )
    model.encode = keras.Model(source, context)
    return model


def tutorial_translate(model, source, method):
    """Greedy decoding step by step, as the tutorial's translate loop."""
    context = model.encode(source, training=False)
    batch = source.shape[0]
    token = np.full((batch, 1), START_ID, "int32")
    state = np.zeros((batch, model.step.inputs[2].shape[-1]), "float32")
    mask = np.not_equal(source, PAD_ID)[:, None, :]
    tokens = []
    for _ in range(MAX_LENGTH):
        inputs = [token, context, state, mask]
        logits, state = model.step([tf.constant(x) for x in inputs])
        token = np.argmax(np.asarray(logits)[:, -1], -1).astype("int32")
        tokens.append(token)
        token = token[:, None]
    return np.stack(tokens, axis=1)


# === The keras.io English-to-Spanish Transformer ===


def keras_io_transformer(source_vocab, target_vocab, quick):
    embed_dim, latent_dim, heads = (32, 64, 2) if quick else (256, 2048, 8)

    def embed(ids, vocab):  # learned token + position embeddings
        return keras_hub.layers.TokenAndPositionEmbedding(
            vocab, MAX_LENGTH + 1, embed_dim
        )(ids)

    def block(x, memory=None, padding=None):
        attend = keras.layers.MultiHeadAttention(heads, embed_dim)
        if memory is None:  # encoder: self-attention over the source
            x = keras.layers.LayerNormalization()(
                x + attend(x, x, attention_mask=padding)
            )
        else:  # decoder: causal self-attention, then cross-attention
            x = keras.layers.LayerNormalization()(
                x + attend(x, x, use_causal_mask=True)
            )
            cross = keras.layers.MultiHeadAttention(heads, embed_dim)
            x = keras.layers.LayerNormalization()(
                x + cross(x, memory, attention_mask=padding)
            )
        ffn = keras.Sequential(
            [
                keras.layers.Dense(latent_dim, activation="relu"),
                keras.layers.Dense(embed_dim),
            ]
        )
        return keras.layers.LayerNormalization()(x + ffn(x))

    source = keras.Input((None,), dtype="int32", name="source")
    target_in = keras.Input((None,), dtype="int32", name="target_in")
    padding = keras.ops.expand_dims(keras.ops.not_equal(source, PAD_ID), 1)
    memory = block(embed(source, source_vocab), padding=padding)
    x = block(embed(target_in, target_vocab), memory, padding)
    logits = keras.layers.Dense(target_vocab)(keras.layers.Dropout(0.5)(x))
    model = keras.Model({"source": source, "target_in": target_in}, logits)
    model.compile(optimizer=keras.optimizers.RMSprop(), loss=loss())
    return model


def keras_io_translate(model, source, method):
    """The tutorial's decoding: re-run the model on the growing prefix."""
    batch = source.shape[0]
    target = np.full((batch, 1), START_ID, "int32")
    for _ in range(MAX_LENGTH):
        logits = model(
            {"source": tf.constant(source), "target_in": tf.constant(target)},
            training=False,
        )
        token = np.argmax(np.asarray(logits)[:, -1], -1).astype("int32")
        target = np.concatenate([target, token[:, None]], 1)
    return target[:, 1:]


SYSTEMS = {
    "seq2seq": (seq2seq, ours_translate, ("greedy", "beam")),
    "transformer": (transformer, ours_translate, ("greedy", "beam")),
    "tutorial_rnn": (tutorial_rnn, tutorial_translate, ("greedy",)),
    "keras_io_transformer": (keras_io_transformer, keras_io_translate,
                             ("greedy",)),
}  # fmt: skip


# === Data, training and scoring ===


def load(args):
    if args.quick:
        sources, targets = toy_translation(600, seed=0)
    else:
        sources, targets = load_tsv_pairs(args.data, skip_malformed=True)
    order = np.random.default_rng(0).permutation(len(sources))
    held_out = min(args.held_out, len(sources) // 5)
    test, train = order[:held_out], order[held_out:]
    return (
        ([sources[i] for i in train], [targets[i] for i in train]),
        ([sources[i] for i in test], [targets[i] for i in test]),
    )


def tokenizers(train_src, train_tgt, args):
    return tuple(
        text.Tokenizer(
            text.build_vocabulary(texts, args.vocab_size, lower_case=False),
            lower_case=False,
        )
        for texts in (train_src, train_tgt)
    )


def translate_all(translate, model, method, sources, source_tokenizer, tgt):
    start, outputs = time.perf_counter(), []
    for i in range(0, len(sources), 250):
        ids = source_tokenizer(sources[i : i + 250], max_length=MAX_LENGTH)
        tokens = np.asarray(translate(model, ids, method))
        tokens = np.where(np.cumsum(tokens == END_ID, 1) > 0, PAD_ID, tokens)
        outputs += [s.decode() for s in tgt.detokenize(tokens).numpy()]
    return outputs, time.perf_counter() - start


def system(name):
    """`(build, translate, methods)` of a system; `transformer_KIND` is the
    Transformer with `ATTENTIONS[KIND]`."""
    if name.startswith("transformer_"):
        kind = name[len("transformer_") :]
        build = SYSTEMS["transformer"][0]
        return (
            lambda *args: build(*args, attention=kind),
            *SYSTEMS["transformer"][1:],
        )
    return SYSTEMS[name]


def run(name, data, toks, args):
    build, translate, methods = system(name)
    (train_src, train_tgt), (test_src, test_tgt) = data
    keras.utils.set_random_seed(0)
    model = build(toks[0].vocabulary_size, toks[1].vocabulary_size, args.quick)
    batches = text.translation_batches(
        train_src, train_tgt, *toks, batch_size=64, max_length=MAX_LENGTH
    )
    budget = TimeLimit(args.budget)
    start = time.perf_counter()
    history = model.fit(
        batches,
        epochs=args.epochs,
        callbacks=[budget],
        shuffle=False,  # the batches are reshuffled every epoch
        verbose=args.verbose,
    )
    result = {
        "params": model.count_params(),
        "epochs": len(budget.epoch_seconds),
        "train_seconds": round(time.perf_counter() - start, 1),
        "seconds_per_epoch": round(float(np.median(budget.epoch_seconds)), 1),
        "final_loss": round(history.history["loss"][-1], 3),
    }
    for method in methods:
        hypotheses, seconds = translate_all(
            translate, model, method, test_src, toks[0], toks[1]
        )
        result[f"bleu_{method}"] = round(
            sacrebleu.corpus_bleu(hypotheses, [test_tgt]).score, 1
        )
        result[f"chrf_{method}"] = round(
            sacrebleu.corpus_chrf(hypotheses, [test_tgt]).score, 1
        )
        result[f"decode_seconds_{method}"] = round(seconds, 2)
        result[f"example_{method}"] = hypotheses[0]
    return result


def corpus_parser(description, held_out):
    """The arguments of the scripts that train on the corpus (this one and
    `on_device.py`): data, budget, held-out pairs, vocabulary."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", help="english<TAB>spanish file")
    parser.add_argument("--quick", action="store_true", help="toy corpus")
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--held-out", type=int, default=held_out)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--verbose", type=int, default=0)
    return parser


def main(argv=None):
    parser = corpus_parser(__doc__.split("\n")[0], held_out=1000)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument(
        "--attention",
        help="comma-separated kinds of the Transformer's self-attention "
        f"({', '.join(ATTENTIONS)}): trains transformer_KIND for each, "
        "instead of --systems",
    )
    args = parser.parse_args(argv)
    if not args.data and not args.quick:
        parser.error("give --data FILE.tsv (or --quick for a toy corpus)")
    if args.quick:
        args.budget, args.epochs, args.vocab_size = 5.0, 1, 300
    data = load(args)
    toks = tokenizers(*data[0], args)
    results = {
        "benchmark": "real_translation",
        "data": os.path.basename(args.data) if args.data else "toy",
        "train_pairs": len(data[0][0]),
        "held_out_pairs": len(data[1][0]),
        "vocabulary": [t.vocabulary_size for t in toks],
        "budget_seconds": args.budget,
    }
    names = args.systems.split(",")
    if args.attention:
        kinds = args.attention.split(",")
        for kind in kinds:
            if kind not in ATTENTIONS:
                parser.error(
                    f"--attention {kind}: one of {', '.join(ATTENTIONS)}"
                )
        names = [f"transformer_{kind}" for kind in kinds]
    for name in names:
        results[name] = run(name, data, toks, args)
        print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    print(json.dumps(results, ensure_ascii=False))
    return results


if __name__ == "__main__":
    main()
