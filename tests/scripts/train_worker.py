"""Subprocess body for the distributed tests: train a small model, save weights.

    python tests/scripts/train_worker.py OUT.npz --devices N [--multiworker]
        [--epochs E] [--checkpoint DIR] [--stop-after-epochs K]

With --devices N, the CPU is split into N logical devices (MirroredStrategy);
with --multiworker, TF_CONFIG must be set (MultiWorkerMirroredStrategy).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--multiworker", action="store_true")
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

    sys.path.insert(
        0,
        os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        ),
    )
    from keras_attention import training
    from tests.scripts.small_model import data
    from tests.scripts.small_model import make_model

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = make_model()
    x, y = data()
    global_batch = 16

    def dataset_fn(context):
        batch = context.get_per_replica_batch_size(global_batch)
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
        return ds.batch(batch, drop_remainder=True)

    history = training.train(
        model,
        dataset_fn,
        strategy,
        epochs=args.epochs,
        steps_per_epoch=len(x) // global_batch,
        checkpoint_dir=args.checkpoint,
        verbose=0,
    )
    np.savez(
        args.out,
        *[np.asarray(w) for w in model.get_weights()],
        loss=np.array(history["loss"]),
        replicas=strategy.num_replicas_in_sync,
    )


if __name__ == "__main__":
    main()
