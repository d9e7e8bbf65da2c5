"""Per-backend test setup.

The suite runs on `KERAS_BACKEND=tensorflow` (default), `jax` and `torch`.
Tests of TensorFlow-only modules (`text`, `export`, `training`,
`tf.distribute`, SavedModel export) carry the `tensorflow_only` marker and
are skipped, with that reason printed, on the other backends; so are the
example scripts' quick runs and the files marked `backend_neutral`
(argument checks, datasets, plots, code size: Python that calls no backend
op whose result could differ), checked once, on TensorFlow.
On JAX the session has eight virtual CPU devices, for the sharding tests.

A session guard fails the run when a test writes into the repository:
tests write to `tmp_path`, never to a relative path (a SavedModel written
to `"u"` once got committed at the root).
"""

import os
import subprocess

if os.environ.get("KERAS_BACKEND") == "jax":
    # Eight virtual CPU devices for the sharding tests (tests/test_sharding.py
    # runs keras.distribution on them); XLA reads the flag when JAX loads.
    DEVICES_FLAG = "--xla_force_host_platform_device_count=8"
    if DEVICES_FLAG not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " " + DEVICES_FLAG
        ).strip()
import sys

import keras
import pytest

BACKEND = keras.config.backend()

if BACKEND == "torch":
    import torch

    # Tests read outputs with `np.asarray`; a PyTorch tensor that requires
    # grad refuses that (`.detach()` first). Test-only convenience.
    _array = torch.Tensor.__array__

    def _detached_array(self, *args, **kwargs):
        return _array(self.detach().cpu(), *args, **kwargs)

    torch.Tensor.__array__ = _detached_array


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "tensorflow_only: needs the TensorFlow backend (TF-only module, "
        "tf.distribute or SavedModel export); skipped on the others",
    )
    config.addinivalue_line(
        "markers",
        "backend_neutral: no backend op whose result could differ; run on "
        "TensorFlow only",
    )


def pytest_collection_modifyitems(config, items):
    if BACKEND == "tensorflow":
        return
    tensorflow_only = pytest.mark.skip(
        reason=f"TensorFlow-only feature; KERAS_BACKEND={BACKEND}"
    )
    example = pytest.mark.skip(
        reason="examples run in the TensorFlow job: the same keras.ops code, "
        "with quick-run accuracy bounds set for TensorFlow's initial weights"
    )
    neutral = pytest.mark.skip(
        reason="backend-neutral (argument checks, data, plots): checked on "
        "TensorFlow"
    )
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(tensorflow_only)
        elif "backend_neutral" in item.keywords:
            item.add_marker(neutral)
        elif "/tests/examples/" in str(item.path):
            item.add_marker(example)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BEFORE = pytest.StashKey()  # the paths `git status` listed at the start


def _changed_paths():
    """Untracked or modified paths `git status` reports, or `None`.

    `None` when git or the repository is missing (e.g. tests run from an
    installed wheel): the guard is then off. Ignored paths (`.venv`, `out/`,
    `*.keras`, caches) are not reported, so they are not guarded. No
    optional locks: a `git commit` running meanwhile never meets our
    `index.lock`.
    """
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        if os.path.realpath(top) != os.path.realpath(ROOT):
            return None  # tests/ inside some other repository
        status = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "-z",
             "--untracked-files=all"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    # `-z`: "XY path" entries split by NUL; a rename or copy is followed by
    # its original path, skipped here.
    entries = iter(status.split("\0"))
    paths = set()
    for entry in entries:
        if entry:
            paths.add(entry[3:])
            if "R" in entry[:2] or "C" in entry[:2]:
                next(entries, None)
    return paths


def pytest_sessionstart(session):
    # Once, in the controller: pytest-xdist workers have `workerinput`.
    if not hasattr(session.config, "workerinput"):
        session.config.stash[_BEFORE] = _changed_paths()


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if paths appeared in `git status` during it.

    A guard against test outputs. Only paths new to the set count, so edits
    already in the working tree are fine; a file someone creates by hand in
    the repository while the tests run is reported too (in CI, a fresh
    clone, nobody does).
    """
    before = session.config.stash.get(_BEFORE, None)
    after = _changed_paths() if before is not None else None
    if after is None or not after - before:
        return
    new = sorted(after - before)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = (
        f"{len(new)} path(s) written into the repository during the tests "
        "(write to `tmp_path` instead):"
    )
    if reporter is None:
        print(message, *new, sep="\n  ", file=sys.stderr)
    else:
        reporter.write_line("")  # after the progress line
        reporter.write_sep("=", "files written into the repository", red=True)
        reporter.write_line(message)
        for path in new:
            reporter.write_line(f"  {path}")
    if session.exitstatus in (
        pytest.ExitCode.OK,
        pytest.ExitCode.NO_TESTS_COLLECTED,
    ):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
