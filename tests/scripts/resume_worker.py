"""Subprocess body of the resume tests: train, maybe die by SIGKILL, save.

    python tests/scripts/resume_worker.py OUT.npz --mode fit|train
        [--backup DIR] [--kill-at STEP]

Trains a Transformer with dropout 0.3 for 3 epochs of 4 steps, with
`fit` + `keras.callbacks.BackupAndRestore(DIR)` or with
`keras_attention.training.train(checkpoint_dir=DIR)`. With `--kill-at`, the
process kills itself with SIGKILL at that global step (mid-epoch, after an
earlier epoch was saved), as a preempted job would die. Writes the final
weights.
"""

import argparse
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

EPOCHS, BATCH = 3, 16


def build():
    from keras_attention.models import Transformer

    keras.utils.set_random_seed(0)
    model = Transformer(
        20, 20, num_layers=1, hidden_dim=8, num_heads=2,
        intermediate_dim=16, dropout=0.3,
    )  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


class KillAt(keras.callbacks.Callback):
    """SIGKILL this process when `step` batches have run in all."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--mode", choices=("fit", "train"), default="fit")
    parser.add_argument("--backup", default=None)
    parser.add_argument("--kill-at", type=int, default=None)
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.dirname(root))
    from tests.scripts.small_model import pair_data

    model = build()
    inputs, targets = pair_data()
    if args.mode == "fit":
        callbacks = []
        if args.backup:
            callbacks.append(keras.callbacks.BackupAndRestore(args.backup))
        if args.kill_at:
            callbacks.append(KillAt(args.kill_at))
        model.fit(
            inputs,
            targets,
            batch_size=BATCH,
            epochs=EPOCHS,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )
    else:
        train_with_kill(model, inputs, targets, args)
    np.savez(args.out, *[np.asarray(w) for w in model.get_weights()])


def train_with_kill(model, inputs, targets, args):
    """`training.train` on batches from a generator that can SIGKILL."""
    import tensorflow as tf

    from keras_attention import training

    served = [0]  # batches served in this process, across epochs

    def batches():  # one epoch (training.train iterates once per epoch)
        for step in range(len(targets) // BATCH):
            served[0] += 1
            if served[0] == args.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            rows = slice(step * BATCH, (step + 1) * BATCH)
            yield {k: v[rows] for k, v in inputs.items()}, targets[rows]

    spec = tf.TensorSpec((BATCH, None), tf.int32)
    dataset = tf.data.Dataset.from_generator(
        batches, output_signature=({k: spec for k in inputs}, spec)
    )
    training.train(
        model,
        dataset,
        epochs=EPOCHS,
        steps_per_epoch=len(targets) // BATCH,
        checkpoint_dir=args.backup,
        verbose=0,
    )


if __name__ == "__main__":
    main()
