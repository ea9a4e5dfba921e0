"""`kill -9` at random moments: during training steps, in the middle of backup writes, while the run
finishes (evaluation, samples, saving) and during its export. Rerun after each kill, the run ends
with the weights, the per-epoch history and the single export of an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import time

import keras
import numpy as np
import pytest

from tests.cli.runs import command, command_env, tiny_run

# A fresh process on JAX spends minutes compiling where TensorFlow spends seconds, so the 8 kills run
# on the TensorFlow pass; tests/cli/test_recipes.py checks exact resumption on both backends in-process.
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="8 killed processes: run on the TensorFlow pass (exact resume on JAX: test_recipes.py)")
EPOCHS, STEPS = 3, 4
TOTAL = EPOCHS * STEPS
# The kills, in order: each waits for its moment in a fresh `keras-moe train` process, then kills it.
PLAN = ["after a step", "mid backup write", "anywhere", "after a step", "mid backup write", "finishing", "export", "export"]


class Run:
    def __init__(self, root, name, corpus):
        self.root, self.name = root, name
        self.folder = root / "outputs" / name
        self.exports = root / "saved_models" / name
        self.config = tiny_run(corpus, f"name={name}", f"trainer.epochs={EPOCHS}", f"trainer.steps_per_epoch={STEPS}",
                               "trainer.backup_freq=1", "trainer.verbose=0")
        self.log = open(root / f"{name}.log", "a")

    def start(self):
        return subprocess.Popen(command("train", *self.config), cwd=self.root, env=command_env(),
                                stdout=self.log, stderr=subprocess.STDOUT)

    def backup_step(self):
        try:
            with open(self.folder / "backup" / "latest.json") as handle:
                return int(json.load(handle)["folder"].split("_")[1])
        except (OSError, ValueError):
            return 0

    def backup_staging(self):
        backup = self.folder / "backup"
        return backup.is_dir() and any(entry.startswith(".step_") for entry in os.listdir(backup))

    def export_staging(self):
        return self.exports.is_dir() and any(entry.startswith(".") for entry in os.listdir(self.exports))

    def metrics(self):
        try:
            with open(self.folder / "metrics.json") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None


def wait_for(process, condition, seconds=120):
    """True once `condition()` holds (polled every 2 ms); False if the process ended first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.002)
    raise AssertionError("timed out")


def kill_at(run, process, moment, rng):
    """Waits for `moment` in `process`, kills it with SIGKILL; returns what the kill interrupted."""
    start_step = run.backup_step()
    if moment == "after a step":
        reached = wait_for(process, lambda: run.backup_step() > start_step)
        time.sleep(rng.uniform(0.0, 0.12))
    elif moment == "mid backup write":
        reached = wait_for(process, run.backup_staging)
    elif moment == "anywhere":  # start-up included
        time.sleep(rng.uniform(1.0, 10.0))
        reached = True
    elif moment == "finishing":
        reached = wait_for(process, lambda: run.backup_step() == TOTAL or run.metrics() is not None)
        time.sleep(rng.uniform(0.0, 3.0))
    else:  # export
        reached = wait_for(process, run.export_staging)
        time.sleep(rng.uniform(0.0, 0.5))
    if process.poll() is not None:
        return {"moment": moment, "ended with": process.returncode}  # before its moment came
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    metrics = run.metrics()
    return {"moment": moment, "reached": reached, "backup step": run.backup_step(), "backup staging left": run.backup_staging(),
            "export staging left": run.export_staging(), "trained": metrics is not None,
            "exported": bool(metrics and "saved_model" in metrics)}


def weights(run):
    from keras_moe.training.run_folder import RunFolder

    return RunFolder(run.folder).load_model().get_weights()


def served(run, prompts=("To be, or not", "ROMEO.")):
    """What the exported version answers: every output of `serving_default` and `routing`."""
    import tensorflow as tf

    signatures = tf.saved_model.load(str(run.exports / "1")).signatures
    outputs = {}
    for name in ("serving_default", "routing"):
        for key, value in signatures[name](text=tf.constant(list(prompts))).items():
            outputs[f"{name}/{key}"] = value.numpy()
    return outputs


def test_kill_9_at_any_moment_then_rerun_equals_an_uninterrupted_run(tmp_path, corpus):
    seed = int(os.environ.get("KILL_TEST_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    reference, killed = Run(tmp_path, "reference", corpus), Run(tmp_path, "killed", corpus)
    uninterrupted = reference.start()  # alongside the kills
    kills = []
    for moment in PLAN:
        process = killed.start()
        outcome = kill_at(killed, process, moment, rng)
        assert "ended with" not in outcome, (f"the run ended ({outcome}) before the kill at {moment!r} (seed {seed}); "
                                             f"kills so far: {kills}\n" + (tmp_path / "killed.log").read_text()[-3000:])
        kills.append(outcome)
    finish = killed.start()
    assert finish.wait(timeout=300) == 0, (tmp_path / "killed.log").read_text()[-3000:]
    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()[-3000:]

    print(f"seed {seed}:", *kills, sep="\n  ")
    assert len(kills) == len(PLAN)
    assert sum(k["backup staging left"] for k in kills) >= 1  # some kills hit a backup being written
    assert sum(not k["trained"] and k["backup step"] < TOTAL for k in kills) >= 4  # and training steps
    assert sum(k["export staging left"] for k in kills) >= 1  # and an export being written

    final, expected = killed.metrics(), reference.metrics()
    assert (final["steps_run"], final["epochs_run"]) == (TOTAL, EPOCHS)
    assert json.dumps(final["history"], sort_keys=True) == json.dumps(expected["history"], sort_keys=True)
    for mine, theirs in zip(weights(killed), weights(reference), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert not (killed.folder / "backup").exists()
    assert not [entry for entry in os.listdir(killed.folder) if entry.startswith(".tmp-")]
    assert sorted(os.listdir(killed.exports)) == ["1"]  # one version, no staging folder left
    mine, theirs = served(killed), served(reference)
    assert sorted(mine) == sorted(theirs) and "serving_default/next_token_logits" in mine
    for key in mine:
        np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
