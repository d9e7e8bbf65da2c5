"""Sharded training on JAX: one Transformer over 8 devices equals one device.

`keras.distribution` is Keras's engine for spreading a model over devices
on JAX. This script makes 8 virtual CPU devices (`XLA_FLAGS=
--xla_force_host_platform_device_count=8`, as on one host with 8
accelerators) and trains the same `keras_attention.models.Transformer`
(reversing digit strings, `keras_attention.datasets.sequences`) twice from
the same initial weights:

1. on one device;
2. under `keras.distribution.ModelParallel` on a 2 × 4 device mesh with
   `Transformer.get_layout_map`: the batch splits over the `batch` axis
   (2), the attention heads, feed-forward width and embedding tables over
   the `model` axis (4).

With `--sequence-parallel` the mesh is `batch` × `sequence` (2 × 4) and the
self-attention layers get `sequence_parallel="sequence"`
(`attention_options`): the sequence splits over the 4 devices of each
batch row and self-attention runs as **ring attention** (each device keeps
its query block, key/value blocks go around the ring); the weights shard
over the same 4 devices.

Then it checks that both runs give the same losses and weights (they
should, to float32 rounding), prints them, and writes to `--out`:

- `loss.png`: the loss per epoch of both runs;
- `summary.json`: the numbers of the table;
- `sharded_transformer.keras`: the model trained under the distribution.

    python examples/sharded_training.py [--quick] [--sequence-parallel]
        [--out DIR]

On a real cluster the same code runs after `jax.distributed.initialize()`
on every host; see docs/scaling.md.
"""

import os

# Before JAX starts: 8 virtual CPU devices, and the JAX backend.
DEVICES_FLAG = "--xla_force_host_platform_device_count=8"
if "xla_force_host_platform_device_count" not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " " + DEVICES_FLAG
    ).strip()
os.environ["KERAS_BACKEND"] = "jax"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import quiet_start  # noqa: E402, F401  (no TensorFlow start-up lines)

# isort: split
import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

from keras_attention.datasets import sequences  # noqa: E402
from keras_attention.models import Transformer  # noqa: E402

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

FULL = {"num_train": 8192, "epochs": 4, "max_length": 24, "hidden_dim": 64}
QUICK = {"num_train": 512, "epochs": 2, "max_length": 16, "hidden_dim": 32}
BATCH_SIZE = 32  # global: 16 per row of the batch axis
TOLERANCE = {"loss": 1e-4, "weights": 1e-3}


def build_model(settings, sequence_parallel):
    hidden_dim = settings["hidden_dim"]
    options = {"sequence_parallel": "sequence"} if sequence_parallel else None
    model = Transformer(
        sequences.vocabulary_size(),
        sequences.vocabulary_size(),
        num_layers=2,
        hidden_dim=hidden_dim,
        num_heads=4,
        intermediate_dim=2 * hidden_dim,
        dropout=0.0,  # ring attention has no dropout on the weights
        attention_options=options,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def make_distribution(sequence_parallel):
    """`ModelParallel` on a 2 × 4 mesh with the Transformer's layout map."""
    second = "sequence" if sequence_parallel else "model"
    mesh = keras.distribution.DeviceMesh(
        (2, 4), ("batch", second), keras.distribution.list_devices()
    )
    layout_map = Transformer.get_layout_map(
        mesh, model_parallel_dim_name=second, data_parallel_dim_name="batch"
    )
    return keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    )


def train(settings, data, weights, distribution=None, sequence_parallel=False):
    """Train from `weights`; the model, its loss per epoch, seconds."""
    scope = distribution.scope() if distribution else contextlib.nullcontext()
    with scope:
        model = build_model(settings, sequence_parallel)
        model.set_weights(weights)
        start = time.perf_counter()
        history = model.fit(
            {"source": data["source"], "target_in": data["target_in"]},
            data["target_out"],
            batch_size=BATCH_SIZE,
            epochs=settings["epochs"],
            shuffle=False,  # the same batches in both runs
            verbose=2 if os.environ.get("CI") else 1,
        ).history
    return model, history["loss"], time.perf_counter() - start


def plot_losses(one, sharded, label, path):
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    epochs = np.arange(1, len(one) + 1)
    ax.plot(epochs, one, "o-", label="one device", linewidth=3, alpha=0.5)
    ax.plot(epochs, sharded, "x--", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_xticks(epochs)
    ax.set_title("The same training, on one device and on eight")
    ax.legend()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument(
        "--sequence-parallel",
        action="store_true",
        help="split the sequence over a mesh axis: ring attention",
    )
    parser.add_argument("--out", default="out/sharded_training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    os.makedirs(args.out, exist_ok=True)
    devices = keras.distribution.list_devices()
    if len(devices) < 8:
        raise SystemExit(
            f"needs 8 devices, found {len(devices)}: start with XLA_FLAGS="
            f"{DEVICES_FLAG} (this script sets it unless XLA_FLAGS has a "
            "device count already)"
        )
    data = sequences.copy_reverse(
        settings["num_train"], 4, settings["max_length"], seed=args.seed
    )
    print(
        f"{len(devices)} devices; reversing {settings['num_train']} digit "
        f"strings: source {data['source'].shape[1]} tokens, target "
        f"{data['target_in'].shape[1]}"
    )

    keras.utils.set_random_seed(args.seed)
    weights = build_model(settings, args.sequence_parallel).get_weights()
    print("\n== one device ==")
    one, one_losses, one_seconds = train(settings, data, weights)
    distribution = make_distribution(args.sequence_parallel)
    mesh = distribution.device_mesh
    label = (
        f"ModelParallel {mesh.shape[0]}×{mesh.shape[1]} "
        f"({' × '.join(mesh.axis_names)})"
        + (", ring attention" if args.sequence_parallel else "")
    )
    print(f"\n== {label} ==")
    sharded, losses, seconds = train(
        settings, data, weights, distribution, args.sequence_parallel
    )

    kernel = next(w for w in sharded.weights if w.path.endswith("query/kernel"))
    difference = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(sharded.get_weights(), one.get_weights())
    )
    loss_difference = float(np.max(np.abs(np.subtract(losses, one_losses))))
    equal = (
        loss_difference <= TOLERANCE["loss"] * max(one_losses)
        and difference <= TOLERANCE["weights"]
    )
    results = {
        "mesh": dict(zip(mesh.axis_names, mesh.shape)),
        "sequence_parallel": args.sequence_parallel,
        "one_device_loss": one_losses,
        "sharded_loss": losses,
        "max_loss_difference": loss_difference,
        "max_weight_difference": difference,
        "equal": equal,
        "query_kernel_sharding": [str(s) for s in kernel.value.sharding.spec],
        "one_device_seconds": one_seconds,
        "sharded_seconds": seconds,
    }
    print(f"\n{'epoch':<8}{'one device':>14}{'sharded':>14}")
    for epoch, (a, b) in enumerate(zip(one_losses, losses), 1):
        print(f"{epoch:<8}{a:>14.6f}{b:>14.6f}")
    print(
        f"\n{kernel.path} {tuple(kernel.shape)} is sharded as "
        f"{tuple(kernel.value.sharding.spec)}"
    )
    print(
        f"largest loss difference {loss_difference:.2e}, largest weight "
        f"difference {difference:.2e}: "
        + ("equal to one device" if equal else "NOT equal to one device")
    )
    print(
        f"{one_seconds:.0f} s on one device, {seconds:.0f} s on 8 virtual "
        "devices (they share this machine's cores: no speed-up expected)"
    )
    plot_losses(one_losses, losses, label, os.path.join(args.out, "loss.png"))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(results, f, indent=2)
    sharded.save(os.path.join(args.out, "sharded_transformer.keras"))
    print(f"plot, summary and model written to {args.out}")
    return results


if __name__ == "__main__":
    main()
