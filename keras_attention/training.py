"""A custom training loop for `tf.distribute` strategies, with checkpoints.

Keras 3's `fit()` works under `tf.distribute.MirroredStrategy`, but not under
`MultiWorkerMirroredStrategy` on TensorFlow (keras-team/keras#20585: "Attempt
to convert a value (PerReplica...)"). `train` is the plain loop that works
under both: `strategy.run` of a per-replica step, gradients all-reduced by the
strategy, a `tf.train.CheckpointManager` so a killed job resumes where it
stopped, and a progress bar on the chief only.

```python
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # TF_CONFIG set
with strategy.scope():
    model = keras_attention.models.Seq2Seq(...)
    model.compile(optimizer="adam", loss=loss)
train(model, dataset_fn, strategy, epochs=3, steps_per_epoch=100,
      checkpoint_dir="ckpt")
```

This module is TensorFlow-specific by nature (`tf.distribute`).
"""

import os

import keras
import tensorflow as tf


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return (
        task_type is None
        or task_type == "chief"
        or (
            task_type == "worker"
            and task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict()
        )
    )


def _checkpoint_dir(checkpoint_dir, strategy):
    """Chief writes to `checkpoint_dir`; other workers to a private copy."""
    if _is_chief(strategy):
        return checkpoint_dir
    resolver = strategy.cluster_resolver
    return os.path.join(
        checkpoint_dir, f".{resolver.task_type}_{resolver.task_id}"
    )


def _distribute(dataset, strategy):
    if callable(dataset) and not isinstance(dataset, tf.data.Dataset):
        return strategy.distribute_datasets_from_function(dataset)
    return strategy.experimental_distribute_dataset(dataset)


def _loss_and_optimizer(model, optimizer, loss):
    optimizer = optimizer or getattr(model, "optimizer", None)
    loss = keras.losses.get(loss or getattr(model, "loss", None))
    if optimizer is None or loss is None:
        raise ValueError(
            "`train` needs an optimizer and a loss: compile the model or "
            f"pass them. Received: optimizer={optimizer}, loss={loss}"
        )
    return loss, optimizer


def _steps_per_epoch(dataset, steps_per_epoch):
    if steps_per_epoch is not None:
        return steps_per_epoch
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            "`steps_per_epoch` is required when `dataset` is a function."
        )
    cardinality = int(dataset.cardinality())
    if cardinality < 0:
        raise ValueError(
            "`steps_per_epoch` is required for a dataset of unknown or "
            "infinite length. Received: steps_per_epoch=None"
        )
    return cardinality


def _restore(checkpoint_dir, strategy, max_to_keep, **objects):
    """A `CheckpointManager` of `objects`, restored from the latest save."""
    if not checkpoint_dir:
        return None
    checkpoint = tf.train.Checkpoint(**objects)
    manager = tf.train.CheckpointManager(
        checkpoint,
        _checkpoint_dir(checkpoint_dir, strategy),
        max_to_keep=max_to_keep,
    )
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
    return manager


def _seed_states(model):
    """The model's random-seed states (dropout): variables, not weights.

    A TensorFlow checkpoint of the model holds its weights only; without
    these a resumed run would draw the dropout masks of its first epoch
    again instead of continuing the random stream.
    """
    weights = {id(weight) for weight in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _per_example_loss(loss, targets, predictions):
    """Mean over the (unmasked) tokens of each example: `(B,)`."""
    # Unreduced loss: a `Loss` object's `call`, or a plain loss function.
    loss_fn = loss.call if isinstance(loss, keras.losses.Loss) else loss
    values = tf.cast(loss_fn(targets, predictions), tf.float32)
    batch = tf.shape(values)[0]
    values = tf.reshape(values, [batch, -1])
    mask = getattr(predictions, "_keras_mask", None)
    if mask is None:
        return tf.reduce_mean(values, axis=-1)
    mask = tf.reshape(tf.cast(mask, tf.float32), [batch, -1])
    return tf.reduce_sum(values * mask, -1) / tf.maximum(
        tf.reduce_sum(mask, -1), 1.0
    )


def _train_step(model, optimizer, loss, strategy):
    """`train_step(iterator) -> loss`: one global batch, all replicas."""
    num_replicas = strategy.num_replicas_in_sync

    def replica_step(inputs, targets):
        with tf.GradientTape() as tape:
            predictions = model(inputs, training=True)
            per_example = _per_example_loss(loss, targets, predictions)
            value = tf.nn.compute_average_loss(per_example)
            if model.losses:
                value += tf.add_n(model.losses) / num_replicas
            scaled = optimizer.scale_loss(value)
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return value

    @tf.function
    def train_step(iterator):
        inputs, targets = next(iterator)
        per_replica = strategy.run(replica_step, args=(inputs, targets))
        return strategy.reduce(
            tf.distribute.ReduceOp.SUM, per_replica, axis=None
        )

    return train_step


def _run_epoch(train_step, iterator, steps, bar):
    """Mean loss of `steps` steps; the bar shows the running mean."""
    total = 0.0
    for step in range(steps):
        total += float(train_step(iterator))
        if bar is not None:
            bar.update(step + 1, values=[("loss", total / (step + 1))])
    return total / steps


def train(
    model,
    dataset,
    strategy=None,
    epochs=1,
    steps_per_epoch=None,
    checkpoint_dir=None,
    max_to_keep=2,
    optimizer=None,
    loss=None,
    verbose=1,
):
    """Train `model` with a custom loop under any `tf.distribute` strategy.

    The model (and optimizer) must be created inside `strategy.scope()`.
    Each example's loss is the mean over its tokens (skipping those masked
    by the model's output mask); the loss of each replica is
    `sum(per-example loss) / global batch` (plus
    the model's regularization losses divided by the number of replicas), so
    the all-reduced gradient equals single-device training on the global
    batch. With `checkpoint_dir`, model, optimizer, the dropout seed states
    and progress are saved after every epoch and restored at start: a
    killed job re-run with the same arguments continues from the last
    finished epoch and ends with the weights of an uninterrupted run (when
    each epoch reads the same data: a dataset that reshuffles on every
    iteration needs a seed per epoch for that).

    Args:
        model: a built or unbuilt Keras model.
        dataset: a `tf.data.Dataset` of `(inputs, targets)` batched with the
            global batch size, or a function `input_context -> Dataset`
            batched per replica (`distribute_datasets_from_function`; use
            `input_context.get_per_replica_batch_size(global_batch)` and
            `shard`).
        strategy: a `tf.distribute.Strategy`. Defaults to the current one.
        epochs: number of epochs. Defaults to `1`.
        steps_per_epoch: steps per epoch; required for infinite datasets.
            Defaults to one pass over `dataset`.
        checkpoint_dir: directory for checkpoints, or `None`.
        max_to_keep: checkpoints kept. Defaults to `2`.
        optimizer: defaults to `model.optimizer` (from `compile`).
        loss: a Keras loss; defaults to `model.loss` (from `compile`).
        verbose: progress bar on the chief when `1`. Defaults to `1`.

    Returns:
        dict `{"loss": [mean loss per epoch run]}`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    loss, optimizer = _loss_and_optimizer(model, optimizer, loss)
    steps_per_epoch = _steps_per_epoch(dataset, steps_per_epoch)
    chief = _is_chief(strategy)
    with strategy.scope():
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
    manager = _restore(
        checkpoint_dir,
        strategy,
        max_to_keep,
        model=model,
        optimizer=optimizer,
        epoch=epoch,
        seeds=_seed_states(model),
    )
    train_step = _train_step(model, optimizer, loss, strategy)
    history = {"loss": []}
    while int(epoch.numpy()) < epochs:
        iterator = iter(_distribute(dataset, strategy))
        bar = None
        if chief and verbose:
            print(f"Epoch {int(epoch.numpy()) + 1}/{epochs}")
            # The running mean of the epoch, as `fit()` shows it.
            bar = keras.utils.Progbar(
                steps_per_epoch, stateful_metrics=["loss"]
            )
        history["loss"].append(
            _run_epoch(train_step, iterator, steps_per_epoch, bar)
        )
        epoch.assign_add(1)
        if manager is not None:
            manager.save(checkpoint_number=int(epoch.numpy()))
    return history
