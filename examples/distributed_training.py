"""Distributed training: the two tf.distribute paths, on one CPU machine.

The date-normalisation Seq2Seq ("4 Jul 2023" → "2023-07-04", Bahdanau
attention) trained twice on the same data with a global batch of 64:

1. **`fit()` under `MirroredStrategy`**, in this process, on 2 logical CPU
   devices (each replica gets half of every global batch), with
   `keras.callbacks.BackupAndRestore` so a killed run resumes.
2. **`keras_attention.training.train` under `MultiWorkerMirroredStrategy`**
   (Keras 3's `fit()` fails there: keras-team/keras#20585): this script
   starts itself twice as worker processes on localhost, each with its own
   `TF_CONFIG` (`127.0.0.1` ports), exactly as you would launch it on two
   machines. The chief (worker 0) shows the progress bar and writes the
   checkpoints; the other worker checkpoints to a private directory.

Afterwards it checks that both workers hold identical weights, greedy-decodes
held-out dates with each trained model, prints a summary table and writes to
`--out`:

- `loss.png`: training loss per epoch of both paths;
- `summary.json`: the numbers of the table;
- `backup/`, `checkpoints/`: the fault-tolerance state of each path
  (re-running the script with the same `--out` continues from it; delete
  them to train from scratch).

    python examples/distributed_training.py [--quick] [--out DIR]
        [--path both|mirrored|multiworker]

On a real cluster run the worker command (`--worker`) on every machine with
`TF_CONFIG` listing the machines' addresses; see docs/distributed.md.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import quiet_start  # noqa: F401  (first: no TensorFlow start-up lines)

# isort: split
import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

matplotlib.use("Agg")

from keras_attention import training  # noqa: E402
from keras_attention.datasets import dates  # noqa: E402
from keras_attention.models import Seq2Seq  # noqa: E402

GLOBAL_BATCH = 64
FULL = {"num_train": 12800, "epochs": 3, "units": 64, "embedding_dim": 32}
QUICK = {"num_train": 512, "epochs": 2, "units": 16, "embedding_dim": 8}


def settings_of(args):
    return dict(QUICK if args.quick else FULL)


def load(settings, num_test):
    train, test = dates.load_data(settings["num_train"], num_test, seed=0)
    inputs = {"source": train["source"], "target_in": train["target_in"]}
    return inputs, train["target_out"], test


def build_model(settings):
    model = Seq2Seq(
        len(dates.SOURCE_VOCABULARY),
        len(dates.TARGET_VOCABULARY),
        embedding_dim=settings["embedding_dim"],
        units=settings["units"],
        attention="bahdanau",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def exact_match(model, test):
    tokens = model.generate(test["source"], dates.TARGET_LENGTH)
    predictions = dates.decode(tokens, dates.TARGET_VOCABULARY)
    return float(np.mean([p == t for p, t in zip(predictions, test["iso"])]))


# Path 1: fit() under MirroredStrategy ---------------------------------------


def run_mirrored(settings, args, test):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print(
        f"\n== fit() under MirroredStrategy: {strategy.num_replicas_in_sync} "
        f"replicas, {GLOBAL_BATCH // strategy.num_replicas_in_sync} "
        "examples per replica and step =="
    )
    inputs, targets, _ = load(settings, 0)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(settings)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    start = time.perf_counter()
    history = model.fit(
        dataset.batch(GLOBAL_BATCH),
        epochs=settings["epochs"],
        callbacks=[
            keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup"))
        ],
        shuffle=False,  # a tf.data.Dataset: fit would ignore it, and warn
        verbose=2 if os.environ.get("CI") else 1,
    ).history
    return {
        "replicas": strategy.num_replicas_in_sync,
        "loss": history.get("loss", []),
        "seconds": time.perf_counter() - start,
        "exact_match": exact_match(model, test),
    }


# Path 2: training.train under MultiWorkerMirroredStrategy -------------------


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_worker(args):
    """One worker: reads TF_CONFIG, trains with `training.train`."""
    settings = settings_of(args)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    inputs, targets, _ = load(settings, 0)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))

    def dataset_fn(context):
        batch = context.get_per_replica_batch_size(GLOBAL_BATCH)
        shard = dataset.shard(
            context.num_input_pipelines, context.input_pipeline_id
        )
        return shard.batch(batch, drop_remainder=True)

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(settings)
    history = training.train(
        model,
        dataset_fn,
        strategy,
        epochs=settings["epochs"],
        steps_per_epoch=settings["num_train"] // GLOBAL_BATCH,
        checkpoint_dir=os.path.join(args.out, "checkpoints"),
        verbose=0 if os.environ.get("CI") else 1,
    )
    np.savez(
        os.path.join(args.out, f"worker_{task['index']}.npz"),
        *[np.asarray(w) for w in model.get_weights()],
        loss=np.array(history["loss"]),
        replicas=strategy.num_replicas_in_sync,
    )


def run_multiworker(settings, args, test):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    print(
        "\n== training.train under MultiWorkerMirroredStrategy: 2 worker "
        f"processes, cluster {cluster['worker']} =="
    )
    command = [sys.executable, os.path.abspath(__file__), "--worker"]
    command += ["--out", args.out] + (["--quick"] if args.quick else [])
    start = time.perf_counter()
    workers = []
    for index in range(2):
        config = {
            "cluster": cluster,
            "task": {"type": "worker", "index": index},
        }
        env = {**os.environ, "TF_CONFIG": json.dumps(config)}
        # Only the chief's progress bar is shown; the other worker is quiet.
        output = None if index == 0 else subprocess.DEVNULL
        workers.append(
            subprocess.Popen(command, env=env, stdout=output, stderr=output)
        )
    codes = [worker.wait(timeout=1800) for worker in workers]
    if any(codes):
        raise RuntimeError(f"a worker failed: exit codes {codes}")
    seconds = time.perf_counter() - start
    results = [
        np.load(os.path.join(args.out, f"worker_{i}.npz")) for i in range(2)
    ]
    weights = [
        [r[f"arr_{i}"] for i in range(len(r.files) - 2)] for r in results
    ]
    difference = max(
        float(np.max(np.abs(a - b))) for a, b in zip(*weights) if a.size
    )
    model = build_model(settings)  # the chief's weights, on one device
    model.set_weights(weights[0])
    return {
        "replicas": int(results[0]["replicas"]),
        "loss": results[0]["loss"].tolist(),
        "seconds": seconds,
        "exact_match": exact_match(model, test),
        "max_weight_difference_between_workers": difference,
    }


# Report ---------------------------------------------------------------------


def plot_losses(summary, path):
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    # Same data, seed and global batch: the curves should coincide, so the
    # second is drawn dashed on top of the first.
    styles = [{"linewidth": 4, "alpha": 0.5}, {"linestyle": "--"}]
    for (name, result), style in zip(summary.items(), styles):
        epochs = np.arange(1, len(result["loss"]) + 1)
        axis.plot(epochs, result["loss"], marker="o", label=name, **style)
    axis.set_xlabel("epoch")
    axis.set_ylabel("training loss (cross-entropy per token)")
    axis.set_title("Seq2Seq on dates: the same model, two tf.distribute paths")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--out", default="out/distributed_training")
    parser.add_argument(
        "--path", choices=("both", "mirrored", "multiworker"), default="both"
    )
    parser.add_argument(
        "--worker", action="store_true", help="run as one worker (TF_CONFIG)"
    )
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.worker:
        return run_worker(args)

    # Two logical devices for MirroredStrategy; must precede any TF op.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    settings = settings_of(args)
    _, _, test = load(settings, 64 if args.quick else 1000)
    summary = {}
    if args.path in ("both", "mirrored"):
        summary["fit, MirroredStrategy (2 devices)"] = run_mirrored(
            settings, args, test
        )
    if args.path in ("both", "multiworker"):
        summary["training.train, MultiWorkerMirrored (2 workers)"] = (
            run_multiworker(settings, args, test)
        )

    print(f"\n{'path':<50} {'replicas':>8} {'loss':>7} {'exact':>7} {'s':>6}")
    for name, result in summary.items():
        loss = result["loss"][-1] if result["loss"] else float("nan")
        print(
            f"{name:<50} {result['replicas']:>8} {loss:>7.3f} "
            f"{result['exact_match']:>7.1%} {result['seconds']:>6.0f}"
        )
    for result in summary.values():
        if "max_weight_difference_between_workers" in result:
            difference = result["max_weight_difference_between_workers"]
            print(f"max |weight difference| between the workers: {difference}")
    figure = plot_losses(summary, os.path.join(args.out, "loss.png"))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {figure} and {os.path.join(args.out, 'summary.json')}")
    return summary


if __name__ == "__main__":
    main()
