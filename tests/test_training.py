import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attention import training
from tests.scripts.small_model import DATA
from tests.scripts.small_model import MODELS
from tests.scripts.small_model import data
from tests.scripts.small_model import make_model

pytestmark = (
    pytest.mark.tensorflow_only
)  # the `training` module is TensorFlow-only (tf.distribute)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "scripts", "train_worker.py")


def run_worker(out, *args, env=None):
    return subprocess.Popen(
        [sys.executable, WORKER, str(out), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]


def load_weights(path):
    result = np.load(path)
    weights = [result[k] for k in result.files if k.startswith("arr_")]
    return weights, result["loss"], int(result["replicas"])


def single_device_run(name, fit):
    """The same training as the worker script, in this process."""
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    x, y = DATA[name]()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    if fit:
        loss = model.fit(dataset, epochs=2, shuffle=False, verbose=0)
        loss = loss.history["loss"]
    else:
        loss = training.train(model, dataset, epochs=2, verbose=0)["loss"]
    return model.get_weights(), np.array(loss)


def assert_same_weights(a, b, atol=1e-6):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=atol)


@pytest.mark.slow
# Seq2Seq under MirroredStrategy: examples/distributed_training.py (its quick
# run is a test) and the multi-worker test below.
@pytest.mark.parametrize("name", ["transformer"])
def test_prebuilt_models_fit_under_mirrored_strategy(name, tmp_path):
    out = tmp_path / "w.npz"
    finish(run_worker(out, "--model", name, "--devices", "2", "--fit"))
    weights, loss, replicas = load_weights(out)
    assert replicas == 2
    assert int(np.load(out)["per_replica_batch"]) == 8  # global batch 16
    expected_weights, expected_loss = single_device_run(name, fit=True)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    assert_same_weights(weights, expected_weights, atol=1e-5)


def dataset(batch=16):
    x, y = data()
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def fresh_model():
    keras.utils.set_random_seed(0)
    return make_model()


def test_train_equals_keras_fit_on_one_device():
    x, y = data()
    reference = fresh_model()
    reference.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    model = fresh_model()
    history = training.train(model, dataset(), epochs=2, verbose=0)
    assert len(history["loss"]) == 2
    assert_same_weights(model.get_weights(), reference.get_weights())


@pytest.mark.slow
def test_custom_loop_two_devices_equals_single_device(tmp_path):
    finish(run_worker(tmp_path / "w.npz", "--devices", "2"))
    weights, loss, replicas = load_weights(tmp_path / "w.npz")
    assert replicas == 2
    expected_weights, expected_loss = single_device_run("custom", fit=False)
    assert_same_weights(weights, expected_weights)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)


def free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_seq2seq_workers_end_with_identical_weights(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    processes = []
    for index in range(2):
        config = {
            "cluster": cluster,
            "task": {"type": "worker", "index": index},
        }
        processes.append(
            run_worker(
                tmp_path / f"w{index}.npz",
                "--model",
                "seq2seq",
                "--multiworker",
                "--checkpoint",
                str(tmp_path / "ckpt"),
                env={"TF_CONFIG": json.dumps(config)},
            )
        )
    for process in processes:
        finish(process)
    (w0, loss0, replicas), (w1, loss1, _) = [
        load_weights(tmp_path / f"w{i}.npz") for i in range(2)
    ]
    assert replicas == 2
    assert_same_weights(w0, w1, atol=0)
    np.testing.assert_array_equal(loss0, loss1)
    expected_weights, _ = single_device_run("seq2seq", fit=False)
    assert_same_weights(w0, expected_weights, atol=1e-5)
    # The chief wrote the checkpoints; the other worker a private copy.
    assert (tmp_path / "ckpt" / "checkpoint").exists()


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    uninterrupted = fresh_model()
    training.train(uninterrupted, dataset(), epochs=3, verbose=0)

    interrupted = fresh_model()
    training.train(
        interrupted, dataset(), epochs=1, checkpoint_dir=tmp_path, verbose=0
    )
    # A new process would rebuild the model from scratch: do the same.
    resumed = fresh_model()
    history = training.train(
        resumed, dataset(), epochs=3, checkpoint_dir=tmp_path, verbose=0
    )
    assert len(history["loss"]) == 2  # epochs 2 and 3 only
    assert_same_weights(resumed.get_weights(), uninterrupted.get_weights())


def test_backup_and_restore_resumes_fit(tmp_path):
    x, y = data()

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated preemption")

    uninterrupted = fresh_model()
    uninterrupted.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    model = fresh_model()
    with pytest.raises(RuntimeError, match="preemption"):
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=4,
            shuffle=False,
            verbose=0,
            callbacks=[backup, Crash()],
        )
    resumed = fresh_model()
    history = resumed.fit(
        x,
        y,
        batch_size=16,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path))],
    )
    assert len(history.history["loss"]) == 2  # epochs 3 and 4
    assert_same_weights(resumed.get_weights(), uninterrupted.get_weights())


def test_mixed_precision_loss_scale_optimizer_trains():
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = make_model()
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.layers[2].compute_dtype == "float16"
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    history = training.train(
        model, dataset(), epochs=3, optimizer=optimizer, verbose=0
    )
    assert np.isfinite(history["loss"]).all()
    assert history["loss"][-1] < history["loss"][0]


def test_train_errors_name_what_is_missing():
    model = keras.Sequential([keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="optimizer"):
        training.train(model, dataset())
    compiled = fresh_model()
    with pytest.raises(ValueError, match="steps_per_epoch"):
        training.train(compiled, dataset().repeat())


RESUME = os.path.join(ROOT, "tests", "scripts", "resume_worker.py")


# `fit` with BackupAndRestore and dropout resumes exactly on every backend:
# tests/models/test_resume.py (in process); here the custom loop, killed.
@pytest.mark.parametrize("mode", ["train"])
def test_resume_after_sigkill_with_dropout_equals_uninterrupted(mode, tmp_path):
    # 3 epochs of 4 steps, dropout 0.3: killed mid-epoch 2 (after epoch 1
    # was saved), resumed in a new process, it must end where an
    # uninterrupted run ends: the dropout seed state is saved too.
    def run(out, *args):
        return subprocess.run(
            [sys.executable, RESUME, str(tmp_path / out), "--mode", mode,
             *args],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    assert run("full.npz").returncode == 0
    backup = str(tmp_path / "backup")
    killed = run("never.npz", "--backup", backup, "--kill-at", "6")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "never.npz").exists()
    resumed = run("resumed.npz", "--backup", backup)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    full, again = (
        np.load(tmp_path / name) for name in ("full.npz", "resumed.npz")
    )
    assert_same_weights(
        [full[k] for k in full.files], [again[k] for k in again.files]
    )
