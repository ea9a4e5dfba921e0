"""A model's versions on disk (TF Serving layout), loaded and kept current by polling.

`VersionedModel("saved_models/shakespeare_moe")` loads the newest `num_versions` integer version
folders, and `poll()` (run every `poll_seconds` by the server) loads versions that appear and
unloads versions that disappear or fall out of the newest `num_versions`, like TF Serving's
`latest` version policy. A version is published only after it loaded completely.
"""

import logging
import os
import threading

import numpy as np
import tensorflow as tf

from keras_moe.export.saved_model import list_versions
from keras_moe.serving.specs import InputSpec, RequestError

log = logging.getLogger("keras_moe.serving")


class LoadedVersion:
    """One loaded SavedModel version: its signatures and their input specs."""

    def __init__(self, path, version):
        import tensorflow_text  # noqa: F401  (registers TF Text ops, as TF Serving's build has them)

        self.path, self.version = path, version
        self.saved_model = tf.saved_model.load(path, tags=["serve"])
        self.signatures = dict(self.saved_model.signatures)
        if "serving_default" not in self.signatures:
            raise ValueError(f"{path} has no 'serving_default' signature; it has {sorted(self.signatures)}.")
        self.input_specs = {name: _input_specs(fn) for name, fn in self.signatures.items()}

    def predict(self, signature_name, inputs):
        """Runs a signature on numpy inputs; graph assertion failures become `RequestError`s."""
        tensors = {name: tf.constant(value) for name, value in inputs.items()}
        try:
            outputs = self.signatures[signature_name](**tensors)
        except tf.errors.InvalidArgumentError as error:
            raise RequestError(_assertion_message(error)) from None
        return {name: np.asarray(value) for name, value in outputs.items()}

    def metadata(self):
        signature_def = {}
        for name, fn in self.signatures.items():
            outputs = fn.structured_outputs
            signature_def[name] = {
                "inputs": {s.name: {"dtype": s.dtype, "shape": [d if d is not None else -1 for d in s.shape]}
                           for s in self.input_specs[name].values()},
                "outputs": {key: {"dtype": value.dtype.name, "shape": [d if d is not None else -1 for d in value.shape]}
                            for key, value in outputs.items()},
                "method_name": "tensorflow/serving/predict",
            }
        return {"signature_def": {"signature_def": signature_def}}


def _input_specs(function):
    _, kwargs = function.structured_input_signature
    return {
        name: InputSpec(name, "string" if spec.dtype == tf.string else spec.dtype.name, tuple(spec.shape.as_list()))
        for name, spec in kwargs.items()
    }


def _assertion_message(error):
    message = error.message if hasattr(error, "message") else str(error)
    for line in message.splitlines():
        if "assertion failed" in line or "Invalid" in line:
            return line.strip()
    return message.splitlines()[0] if message else "The model rejected the inputs."


class VersionedModel:
    """The loaded versions of one model folder `base_path/<version>/`."""

    def __init__(self, base_path, num_versions=2):
        if not os.path.isdir(base_path):
            raise FileNotFoundError(f"No model folder at {base_path!r}: expected {base_path}/<version>/saved_model.pb.")
        if not isinstance(num_versions, int) or num_versions < 1:
            raise ValueError(f"num_versions must be an int >= 1; received num_versions={num_versions!r}.")
        self.base_path, self.num_versions = base_path, num_versions
        self._versions = {}
        self._errors = {}
        self._lock = threading.Lock()
        self.poll()
        if not self._versions:
            raise FileNotFoundError(
                f"No loadable version under {base_path!r} (expected integer folders holding saved_model.pb); "
                f"found {sorted(os.listdir(base_path))}, errors: {self._errors}."
            )

    def poll(self):
        """Loads new versions and unloads stale ones; returns the served versions."""
        wanted = [v for v in list_versions(self.base_path)
                  if os.path.isfile(os.path.join(self.base_path, str(v), "saved_model.pb"))][-self.num_versions:]
        for version in wanted:
            if version not in self._versions and version not in self._errors:
                try:
                    loaded = LoadedVersion(os.path.join(self.base_path, str(version)), version)
                except Exception as error:  # a broken version must not take the server down
                    log.error("Could not load version %s of %s: %s", version, self.base_path, error)
                    self._errors[version] = str(error)
                    continue
                with self._lock:
                    self._versions[version] = loaded
                log.info("Serving version %s of %s", version, self.base_path)
        with self._lock:
            for version in set(self._versions) - set(wanted):
                del self._versions[version]
                log.info("Unloaded version %s of %s", version, self.base_path)
            return sorted(self._versions)

    def versions(self):
        with self._lock:
            return sorted(self._versions)

    def get(self, version=None):
        """The newest loaded version, or `version`; `RequestError(404)` when it is not loaded."""
        with self._lock:
            if version is None:
                return self._versions[max(self._versions)]
            if version not in self._versions:
                raise RequestError(
                    f"Version {version} of this model is not available; serving versions {sorted(self._versions)}.", status=404
                )
            return self._versions[version]
