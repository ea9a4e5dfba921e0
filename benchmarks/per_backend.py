"""Running a benchmark once per Keras backend, each in its own process (Keras picks its backend at import).

A benchmark script calls `run_per_backend(__file__, backends)` from its `main()`; each child process
runs the same script with `--worker` added to this command's own arguments, under `KERAS_BACKEND`,
and prints its figures as one JSON line last.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_per_backend(script, backends):
    """Yields `(backend, figures)` for each backend: the JSON of the worker's last line of output."""
    for backend in backends:
        command = [sys.executable, os.path.abspath(script), "--worker", *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND=backend), cwd=ROOT)
        if done.returncode:
            raise SystemExit(f"{backend} failed:\n{done.stderr[-3000:]}")
        yield backend, json.loads(done.stdout.strip().splitlines()[-1])
