"""One run, one folder (`outputs/<name>/`), and the rules that keep runs from overwriting each other.

    config.yaml        the run's resolved config, written once the run owns the folder
    backup/            the latest backup while it trains (keras_moe.training.backup)
    model.keras        the trained model
    metrics.json       written when training is done (so its presence means "trained");
                       `export` names the version its SavedModel takes, `saved_model` that it exists
    history.csv, best.weights.h5, expert_load.png, modality_routing.png, tensorboard/

A run resumes only its own folder: a folder whose `config.yaml` differs from this command's config
(run mechanics aside, `identity.RUN_MECHANICS`) stops the command before anything is built, naming
the keys that differ. `trainer.resume=false` discards the folder's run and starts over. One process
at a time holds a folder (an advisory lock, released by the system whatever ends the process).
"""

import contextlib
import fcntl
import json
import os
import shutil
import warnings

import keras
import yaml

import keras_moe  # noqa: F401 (registers every class that a .keras file names, for load_model)
from keras_moe.training.atomic import TEMPORARY_PREFIX, replacing, write_json_atomic, write_text_atomic
from keras_moe.training.errors import RunConflict
from keras_moe.training.identity import config_differences

RUN_STATE = ("backup", "model.keras", "metrics.json")  # what makes a folder hold a run
ARTEFACTS = RUN_STATE + ("config.yaml", "history.csv", "best.weights.h5", "expert_load.png", "modality_routing.png",
                         "tensorboard")
CONFIG_ASSET = "keras_moe_config.yaml"  # the config's file name inside a SavedModel's assets/


def config_yaml(config):
    """A resolved config (plain dict) as YAML text."""
    return yaml.safe_dump(config, sort_keys=False)


class RunFolder:
    def __init__(self, path):
        self.path = str(path)

    def file(self, name):
        return os.path.join(self.path, name)

    @contextlib.contextmanager
    def locked(self):
        """Holds the folder for this process; another process on the same folder stops at once."""
        os.makedirs(self.path, exist_ok=True)
        descriptor = os.open(self.file(".lock"), os.O_CREAT | os.O_RDWR)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunConflict(f"{self.path} is in use by another keras-moe process (the same run is running). "
                                  f"Wait for it, or give this run another name (name=...).") from None
            yield self
        finally:
            os.close(descriptor)

    def saved_config(self):
        path = self.file("config.yaml")
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            return yaml.safe_load(handle)

    def claim(self, config, resume):
        """Makes the folder this run's: refuses another run's folder, starts over when `resume` is False,
        removes what a kill left half-written, and writes `config.yaml` if the folder has none (a rerun
        leaves the first command's record, run mechanics included)."""
        if not resume:
            self.clear()
        saved = self.saved_config()
        if saved is None:
            leftovers = [name for name in RUN_STATE if os.path.exists(self.file(name))]
            if leftovers:
                raise RunConflict(f"{self.path} holds {', '.join(leftovers)} of a run without a config.yaml, so it cannot be "
                                  f"checked against this command. Give this run another name (name=...), or add "
                                  f"trainer.resume=false to discard that run and train this one.")
        else:
            differences = config_differences(saved, config)
            if differences:
                raise RunConflict(
                    f"{self.path} holds the run {saved.get('name')!r} with a different configuration "
                    f"(saved -> this command):\n  " + "\n  ".join(differences) + "\nNothing was changed. Give this run "
                    "another name (name=...) to keep both, or add trainer.resume=false to discard the saved run and "
                    "train this one.")
        for entry in os.listdir(self.path):
            if entry.startswith(TEMPORARY_PREFIX):
                os.remove(self.file(entry))
        if saved is None:
            write_text_atomic(self.file("config.yaml"), config_yaml(config))

    def clear(self):
        for name in ARTEFACTS:
            path = self.file(name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)

    def metrics(self):
        """`metrics.json` (the run is trained), or None."""
        path = self.file("metrics.json")
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            return json.load(handle)

    def write_metrics(self, metrics):
        write_json_atomic(self.file("metrics.json"), metrics)

    def save_model(self, model):
        with replacing(self.file("model.keras")) as temporary:
            model.save(temporary)

    def load_model(self):
        """The trained `model.keras`, uncompiled: each command compiles it for what it does, and needs no
        optimizer state (the warning Keras gives for the optimizer a keras-hub task builds is moot)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.models.load_model(self.file("model.keras"), compile=False)
