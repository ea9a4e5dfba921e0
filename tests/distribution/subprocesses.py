"""Running a distributed job in a fresh Python process (devices must be set up before TF/JAX start)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[2]
tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute: TensorFlow backend")
jax_only = pytest.mark.skipif(keras.backend.backend() != "jax", reason="keras.distribution: JAX backend")


def python_env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")  # this checkout's code
    env.update(extra)
    return env


def run_job(name, *args, timeout=300, **env):
    """`python -m tests.distribution.jobs name args` -> its last stdout line as JSON."""
    result = subprocess.run([sys.executable, "-m", "tests.distribution.jobs", name, *map(str, args)], cwd=ROOT,
                            env=python_env(**env), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_cli(*args, cwd, timeout=300):
    """`python -m keras_moe.cli.main args` in its own process group (so a timeout kills every worker)."""
    process = subprocess.Popen([sys.executable, "-m", "keras_moe.cli.main", *args], cwd=cwd, env=python_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    return process.returncode, output
