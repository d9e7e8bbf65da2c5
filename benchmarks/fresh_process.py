"""Run one measurement of a benchmark script in a fresh Python process.

Peak memory is only comparable when each configuration starts from an empty
process: the script re-runs itself with `--child ARGS_JSON`, and its child
prints the measurement as the last line of stdout, in JSON.
"""

import json
import subprocess
import sys


def measure_in_child(script, *args):
    """`script --child json(args)` in a new process; its last JSON line."""
    command = [sys.executable, script, "--child", json.dumps(list(args))]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])
