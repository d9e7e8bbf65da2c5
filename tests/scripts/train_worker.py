"""Subprocess body for the distributed tests: train a small model, save it.

    python tests/scripts/train_worker.py OUT.npz [--model NAME]
        [--devices N] [--multiworker] [--fit] [--epochs E] [--checkpoint DIR]

With `--devices N` the CPU is split into N logical devices
(MirroredStrategy); with `--multiworker`, TF_CONFIG must be set
(MultiWorkerMirroredStrategy). `--fit` trains with `model.fit`, otherwise
with `keras_attention.training.train`. Writes the final weights, the loss per
epoch, the number of replicas and the per-replica batch size.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH = 16


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--model", default="custom")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--multiworker", action="store_true")
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()

    cpu = tf.config.list_physical_devices("CPU")[0]
    if args.devices > 1:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.devices
        )
    if args.multiworker:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif args.devices > 1:
        strategy = tf.distribute.MirroredStrategy(
            [f"/cpu:{i}" for i in range(args.devices)]
        )
    else:
        strategy = tf.distribute.get_strategy()

    import keras

    root = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(os.path.dirname(root)))
    from keras_attention import training
    from tests.scripts.small_model import DATA
    from tests.scripts.small_model import MODELS

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = MODELS[args.model]()
    x, y = DATA[args.model]()
    dataset = tf.data.Dataset.from_tensor_slices((x, y))

    def dataset_fn(context):
        batch = context.get_per_replica_batch_size(GLOBAL_BATCH)
        ds = dataset.shard(
            context.num_input_pipelines, context.input_pipeline_id
        )
        return ds.batch(batch, drop_remainder=True)

    # What one replica sees of a global batch.
    distributed = strategy.distribute_datasets_from_function(dataset_fn)
    first = strategy.experimental_local_results(next(iter(distributed))[1])
    per_replica_batch = int(first[0].shape[0])

    if args.fit:
        history = model.fit(
            dataset.batch(GLOBAL_BATCH),
            epochs=args.epochs,
            shuffle=False,
            verbose=0,
        ).history
    else:
        history = training.train(
            model,
            dataset_fn,
            strategy,
            epochs=args.epochs,
            steps_per_epoch=len(y) // GLOBAL_BATCH,
            checkpoint_dir=args.checkpoint,
            verbose=0,
        )
    np.savez(
        args.out,
        *[np.asarray(w) for w in model.get_weights()],
        loss=np.array(history["loss"]),
        replicas=strategy.num_replicas_in_sync,
        per_replica_batch=per_replica_batch,
    )


if __name__ == "__main__":
    main()
