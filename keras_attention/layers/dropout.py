"""`Dropout` whose random state is saved with the weights."""

import random

import keras


@keras.saving.register_keras_serializable(package="keras_attention")
class Dropout(keras.layers.Dropout):
    r"""`keras.layers.Dropout` that saves its random-seed state.

    $y = x \odot m / (1 - \mathtt{rate})$ with
    $m \sim \operatorname{Bernoulli}(1 - \mathtt{rate})$ while training, as
    `keras.layers.Dropout`. Keras saves a model's weights but not the
    state of its dropout seed generators, so a `fit` resumed by
    `keras.callbacks.BackupAndRestore` (which saves and loads weights) draws
    the dropout masks of the first steps again and ends with other weights
    than an uninterrupted run. This layer writes its seed-generator state
    with the weights (`save_weights`, `.keras` files), so a resumed run
    continues the same random stream, on every backend. Every dropout of the
    package is one; `get_weights()` is unchanged (the state is not a weight).

    Args:
        rate: fraction of the inputs to drop, in $[0, 1)$.
        noise_shape: as `keras.layers.Dropout`. Defaults to `None`.
        seed: int seed. Defaults to `None`.

    Call arguments:
        inputs: any tensor.
        training: whether to drop.

    Returns:
        Tensor of the shape of `inputs`.

    Examples:
        >>> import numpy as np
        >>> tuple(Dropout(0.5)(np.ones((2, 3)), training=True).shape)
        (2, 3)
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if seed is None and rate > 0:
            # The draw Keras makes for an unseeded layer, made here: with an
            # explicit seed, PyTorch too draws masks from the seed generator
            # (unseeded, Keras uses PyTorch's global generator, which no
            # checkpoint holds).
            seed = random.randint(1, int(1e9))
        super().__init__(rate, noise_shape=noise_shape, seed=seed, **kwargs)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self.rate > 0:
            store["seed_state"] = self.seed_generator.state

    def load_own_variables(self, store):
        if self.rate > 0 and "seed_state" in store.keys():
            self.seed_generator.state.assign(store["seed_state"])
