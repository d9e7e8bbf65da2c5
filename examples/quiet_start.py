"""Start TensorFlow without its C++ start-up lines (import this first).

TensorFlow writes CUDA, oneDNN and absl lines straight to the process's
stderr while it loads, before `TF_CPP_MIN_LOG_LEVEL` is read by its new
logger, so the examples import it once with stderr pointed at /dev/null.
Only the import is silenced: warnings and errors afterwards show as usual.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly():
    if "tensorflow" in sys.modules:
        return
    stderr = sys.stderr.fileno()
    saved, devnull = os.dup(stderr), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stderr)
    try:
        import tensorflow  # noqa: F401
    except ImportError:  # another backend without TensorFlow installed
        pass
    finally:
        os.dup2(saved, stderr)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()
