"""Keep TensorFlow's C++ log lines out of the examples' output.

TensorFlow writes CUDA, oneDNN and absl lines (`I0000 …`, `E0000 …
cuInit`, `WARNING: All log messages before absl::InitializeLog() …`)
straight to the process's stderr, before and after `TF_CPP_MIN_LOG_LEVEL`
is read, so an example imports this module first: stderr then goes through
a filter that drops exactly those lines and passes everything else
(Python warnings, tracebacks) through unchanged. Under pytest nothing is
changed (pytest captures stderr itself).
"""

import atexit
import os
import re
import sys
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# glog/absl line prefixes: severity, MMDD and a time, or absl's notice.
C_LOG_LINE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog|"
    rb"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\])"
)


def _filter_stderr():
    stderr = sys.stderr.fileno()
    original = os.dup(stderr)
    read, write = os.pipe()
    os.dup2(write, stderr)
    os.close(write)

    def pump():
        with os.fdopen(read, "rb") as pipe:
            for line in pipe:
                if not C_LOG_LINE.match(line):
                    os.write(original, line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()

    def restore():  # at exit: the last lines (a traceback too) get through
        sys.stderr.flush()
        os.dup2(original, stderr)  # the pipe's last writer: EOF for `pump`
        thread.join(timeout=5)

    atexit.register(restore)


if "pytest" not in sys.modules:
    _filter_stderr()
