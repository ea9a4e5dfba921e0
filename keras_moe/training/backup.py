"""Backups that survive `kill -9` at any instant and let a run resume exactly.

A backup is a folder `backup/step_<n>/`:

- `model.weights.h5`: the model's and the optimizer's variables (so the optimizer's step counter and
  the learning-rate schedule's position too);
- `metrics.npz`: the running values of every metric (mid-epoch, so the epoch's logs come out as an
  uninterrupted run's);
- `state.json`: the global step, the logs of every completed epoch, the best validation loss so far,
  the time trained so far and the run's resolved config.

It is written under a hidden name (`.step_<n>-xxxx`) and renamed into place; then `backup/latest.json`
(written to a temporary file and renamed) names it; then older backups are removed. A kill at any
instant leaves `latest.json` naming a complete backup, or no `latest.json` yet (the run starts from its
beginning). The data pipeline's position is the global step: `data.train_dataset().skip(step)` gives
the batches an uninterrupted run would see next (the pipelines are seeded, see `keras_moe.data`).
"""

import json
import os
import shutil
import tempfile

import h5py
import keras
import numpy as np

from keras_moe.training.atomic import write_json_atomic
from keras_moe.training.errors import BackupError

FORMAT = 1
POINTER = "latest.json"


class Backup:
    """The backups of one run, in `directory`."""

    def __init__(self, directory):
        self.directory = str(directory)

    def way_out(self):
        return (f"Delete {self.directory} to train this run from its beginning (or rerun with trainer.resume=false, "
                f"which discards the whole run folder).")

    def _fail(self, path, error):
        raise BackupError(f"Cannot read the backup {path}: {error}. {self.way_out()}") from error

    def read(self):
        """The latest complete backup's state (with `"path"`, its folder), or None when there is none."""
        pointer = os.path.join(self.directory, POINTER)
        if not os.path.exists(pointer):
            return None
        try:
            with open(pointer) as handle:
                folder = os.path.join(self.directory, json.load(handle)["folder"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            self._fail(pointer, error)
        path = os.path.join(folder, "state.json")
        try:
            with open(path) as handle:
                state = json.load(handle)
            if state.get("format") != FORMAT or not isinstance(state.get("step"), int) or state["step"] < 0:
                raise ValueError(f"not a keras-moe backup state of format {FORMAT}")
        except (OSError, ValueError, TypeError, AttributeError) as error:
            self._fail(path, error)
        weights = os.path.join(folder, "model.weights.h5")
        try:
            with h5py.File(weights, "r"):  # readable now, not after the data and model are built
                pass
        except OSError as error:
            self._fail(weights, error)
        state["path"] = folder
        return state

    def restore(self, model, state):
        """Loads the backup's model and optimizer variables into `model` (built, optimizer built)."""
        path = os.path.join(state["path"], "model.weights.h5")
        try:
            model.load_weights(path)
        except Exception as error:  # h5py's and Keras's errors name neither the file nor the way out
            self._fail(path, error)

    def metric_values(self, state):
        """The saved running metric values (a list of arrays), or None at an epoch boundary."""
        path = os.path.join(state["path"], "metrics.npz")
        if not os.path.exists(path):
            return None
        try:
            with np.load(path) as values:
                return [values[f"arr_{i}"] for i in range(len(values.files))]
        except Exception as error:
            self._fail(path, error)

    def write(self, model, state, metric_values=None):
        """Writes a backup of `model` at `state["step"]` and makes it the latest, atomically."""
        os.makedirs(self.directory, exist_ok=True)
        name = f"step_{state['step']:09d}"
        staging = tempfile.mkdtemp(prefix=f".{name}-", dir=self.directory)
        model.save_weights(os.path.join(staging, "model.weights.h5"))
        if metric_values is not None:
            np.savez(os.path.join(staging, "metrics.npz"), *metric_values)
        with open(os.path.join(staging, "state.json"), "w") as handle:
            json.dump({**state, "format": FORMAT}, handle, indent=2, sort_keys=True, default=float)
        final = os.path.join(self.directory, name)
        if os.path.exists(final):  # written before a kill that came before `latest.json` named it
            shutil.rmtree(final)
        os.rename(staging, final)
        write_json_atomic(os.path.join(self.directory, POINTER), {"folder": name})
        for entry in os.listdir(self.directory):  # older backups, and what a kill left half-written
            path = os.path.join(self.directory, entry)
            if entry in (name, POINTER) or not (entry.startswith("step_") or entry.startswith(".")):
                continue
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)

    def delete(self):
        shutil.rmtree(self.directory, ignore_errors=True)


def metrics_variables(model):
    """Every metric variable of `model` once (`model.metrics_variables` lists a sublayer's metric once
    per path to it: the MoE layers' routing statistics come twice, through the backbone and the task)."""
    unique = {}
    for variable in model.metrics_variables:
        unique.setdefault(id(variable), variable)
    return list(unique.values())


def metric_values(model):
    """The current values of every metric variable of `model` (losses, accuracy, routing statistics)."""
    return [keras.ops.convert_to_numpy(v) for v in metrics_variables(model)]


def add_metric_values(model, values, backup):
    """Adds saved running sums to `model`'s metric variables (which hold the sums of the steps since)."""
    variables = metrics_variables(model)
    shapes = [tuple(v.shape) for v in variables]
    if len(values) != len(variables) or any(tuple(a.shape) != s for a, s in zip(values, shapes)):
        raise BackupError(f"The backup's metric values ({len(values)}) do not fit this model's metrics ({len(variables)}). "
                          f"{backup.way_out()}")
    for variable, value in zip(variables, values):
        variable.assign(keras.ops.convert_to_numpy(variable) + value)
