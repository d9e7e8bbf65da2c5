"""Benchmark: generation on device (LiteRT) and in onnxruntime vs `generate`.

Trains the real-corpus Transformer and Seq2Seq of `real_translation.py`
(same tokenizers, batches and `--budget` seconds each), or loads them from
`--models DIR` when a previous run saved them there, then exports each with
`keras_attention.export.export_generator` (greedy, batch 1, 40 source and
40 target ids) as LiteRT float32, dynamic int8 and float16, and as ONNX
float32 and dynamic int8. For every file it reports:

- its size in bytes, and the ratio to the float file of its format;
- per-sentence latency at batch 1: the median over `--sentences` held-out
  sentences, run in turn (interleaved) with `model.generate` on TensorFlow
  at batch 1 in the same run, and the ratio to it;
- BLEU and chrF (sacreBLEU) on the first `--held-out` held-out pairs, and
  the share of sentences whose tokens equal `generate`'s.

Prints one JSON line.

    python benchmarks/on_device.py --data spa.txt [--budget 300] [--models DIR]
    python benchmarks/on_device.py --quick   # toy corpus, tiny models
"""

import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import real_translation as rt  # noqa: E402
import sacrebleu  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from keras_attention import text  # noqa: E402
from keras_attention.callbacks import TimeLimit  # noqa: E402
from keras_attention.constants import END_ID  # noqa: E402
from keras_attention.constants import PAD_ID  # noqa: E402
from keras_attention.export import export_generator  # noqa: E402

LENGTH = rt.MAX_LENGTH  # source ids in, target ids out
FILES = {  # name: (format, quantize)
    "litert_float32": ("litert", None),
    "litert_int8": ("litert", "dynamic_int8"),
    "litert_float16": ("litert", "float16"),
    "onnx_float32": ("onnx", None),
    "onnx_int8": ("onnx", "dynamic_int8"),
}


def trained(name, data, toks, args):
    """The model `name` (`transformer`, `seq2seq`): loaded from
    `--models`, else trained as `real_translation.py` trains it."""
    path = args.models and os.path.join(args.models, f"{name}.keras")
    if path and os.path.exists(path):
        return keras.models.load_model(path), "loaded"
    keras.utils.set_random_seed(0)
    build = rt.SYSTEMS[name][0]
    model = build(toks[0].vocabulary_size, toks[1].vocabulary_size, args.quick)
    batches = text.translation_batches(
        *data[0], *toks, batch_size=64, max_length=LENGTH
    )
    model.fit(
        batches, epochs=args.epochs, callbacks=[TimeLimit(args.budget)],
        shuffle=False, verbose=args.verbose,
    )  # fmt: skip
    if path:
        os.makedirs(args.models, exist_ok=True)
        model.save(path)
    return model, "trained"


def runner(path):
    """`source (1, S) -> tokens (1, L)` in the file's runtime."""
    if path.endswith(".onnx"):
        session = onnxruntime.InferenceSession(path)
        return lambda source: session.run(["tokens"], {"source": source})[0]
    run = Interpreter(model_path=path).get_signature_runner()
    return lambda source: run(source=source)["tokens"]


def latencies(functions, sources):
    """Median seconds per sentence of each function, run in turn."""
    for fn in functions.values():
        fn(sources[:1])  # warm-up (and compilation of `generate`)
    times = {name: [] for name in functions}
    for row in sources:
        for name, fn in functions.items():
            start = time.perf_counter()
            np.asarray(fn(row[None]))
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def scores(tokens, references, target_tokenizer):
    tokens = np.where(np.cumsum(tokens == END_ID, 1) > 0, PAD_ID, tokens)
    hypotheses = [
        s.decode() for s in target_tokenizer.detokenize(tokens).numpy()
    ]
    return {
        "bleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 1),
        "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 1),
    }


def measure(name, data, toks, args, folder):
    model, how = trained(name, data, toks, args)
    test_src, test_tgt = (part[: args.held_out] for part in data[1])
    sources = np.asarray(toks[0](test_src, max_length=LENGTH))
    reference = np.asarray(model.generate(sources, LENGTH))
    paths, result = {}, {"model": how, "params": model.count_params()}
    for file, (format, quantize) in FILES.items():
        start = time.perf_counter()
        paths[file] = export_generator(
            model, os.path.join(folder, f"{name}_{file}.{format}"),
            format=format, quantize=quantize, max_length=LENGTH,
            source_length=LENGTH,
        )  # fmt: skip
        result[file] = {
            "bytes": os.path.getsize(paths[file]),
            "export_seconds": round(time.perf_counter() - start, 1),
        }
    functions = {f: runner(p) for f, p in paths.items()}
    functions["generate"] = lambda source: model.generate(source, LENGTH)
    seconds = latencies(functions, sources[: args.sentences])
    result["generate"] = {
        "seconds_per_sentence": round(seconds["generate"], 4),
        **scores(reference, test_tgt, toks[1]),
    }
    for file, (format, _) in FILES.items():
        tokens = np.concatenate([functions[file](row[None]) for row in sources])
        float_file = f"{format}_float32"
        result[file].update(
            size_ratio=round(
                result[file]["bytes"] / result[float_file]["bytes"], 3
            ),
            seconds_per_sentence=round(seconds[file], 4),
            latency_ratio=round(seconds[file] / seconds["generate"], 3),
            same_tokens_as_generate=round(
                float((tokens == reference).all(axis=1).mean()), 3
            ),
            **scores(tokens, test_tgt, toks[1]),
        )
    return result


def main(argv=None):
    parser = rt.corpus_parser(__doc__.split("\n")[0], held_out=500)
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--models", help="folder to save / load the models")
    args = parser.parse_args(argv)
    if not args.data and not args.quick:
        parser.error("give --data FILE.tsv (or --quick for a toy corpus)")
    if args.quick:
        args.budget, args.epochs, args.vocab_size = 5.0, 1, 300
        args.held_out, args.sentences = min(args.held_out, 20), 5
    data = rt.load(args)
    toks = rt.tokenizers(*data[0], args)
    results = {
        "benchmark": "on_device",
        "data": os.path.basename(args.data) if args.data else "toy",
        "held_out_pairs": min(args.held_out, len(data[1][0])),
        "budget_seconds": args.budget,
    }
    with tempfile.TemporaryDirectory() as folder:
        for name in ("transformer", "seq2seq"):
            results[name] = measure(name, data, toks, args, folder)
            print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    transformer = results["transformer"]
    results["targets"] = {
        "litert latency <= 1.0x generate": transformer["litert_float32"][
            "latency_ratio"
        ]
        <= 1.0,
        "int8 file <= 0.35x float": transformer["litert_int8"]["size_ratio"]
        <= 0.35,
        "int8 BLEU drop <= 0.5": transformer["litert_float32"]["bleu"]
        - transformer["litert_int8"]["bleu"]
        <= 0.5,
    }
    print(json.dumps(results, ensure_ascii=False))
    return results


if __name__ == "__main__":
    main()
