"""The versions of one model folder, managed as TF Serving's model manager does (`latest` policy).

`ModelVersions("fortunes", "saved_models/fortunes", num_versions=2)`; `poll()` (run every
`--poll-seconds` by the server) brings the served set up to date:

- it serves the newest `num_versions` *loadable* versions: integer folders holding `saved_model.pb`,
  newest first, skipping versions that failed to load (they do not count toward `num_versions`);
- a served version stays served until newer ones have loaded: loads come first, unloads after;
- a version that failed is retried when its folder changes (the size and mtime of its files, so a
  version caught half-copied loads once the copy is complete); a crashed worker is loaded again;
- a version whose folder is deleted is unloaded.

Each version runs in its own worker process (`keras_moe.serving.workers`), so unloading returns
all of its memory. `use(version)` lends a served version to one request; a version is unloaded only
after the requests holding it have finished (or `retire_seconds` passed). Without any served
version every request answers 503 and the status routes say not ready; a version that is not
served answers 404 (saying why, when it failed to load).
"""

import collections
import contextlib
import logging
import os
import threading

from keras_moe.export.saved_model import list_versions
from keras_moe.serving.specs import RequestError
from keras_moe.serving.workers import LoadError, Worker

log = logging.getLogger("keras_moe.serving")


def fingerprint(folder):
    """What changes when any file under `folder` changes: paths, sizes and modification times."""
    entries = []
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:  # deleted while we looked
                continue
            entries.append((os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


class ModelVersions:
    def __init__(self, name, base_path, num_versions=2, start_worker=Worker, retire_seconds=60.0):
        if not isinstance(num_versions, int) or num_versions < 1:
            raise ValueError(f"num_versions must be an int >= 1; received num_versions={num_versions!r}.")
        self.name, self.base_path, self.num_versions = name, base_path, num_versions
        self._start_worker, self._retire_seconds = start_worker, retire_seconds
        self._served = {}  # version -> Worker
        self._failed = {}  # version -> (fingerprint at the failed attempt, reason)
        self._loading = None
        self._leases = collections.Counter()  # Worker -> requests holding it
        self._condition = threading.Condition()

    # === Polling ===

    def poll(self):
        """Loads what should be served, then unloads what should not; returns the served versions."""
        on_disk = {v: os.path.join(self.base_path, str(v)) for v in list_versions(self.base_path)}
        on_disk = {v: path for v, path in on_disk.items() if os.path.isfile(os.path.join(path, "saved_model.pb"))}
        retired = []
        with self._condition:
            for version, worker in list(self._served.items()):
                if not worker.alive():
                    log.error("The process serving version %s of %s stopped; loading it again", version, self.name)
                    retired.append(self._served.pop(version))
            for version, (seen, _) in list(self._failed.items()):
                if version not in on_disk or fingerprint(on_disk[version]) != seen:
                    del self._failed[version]  # changed or gone: worth another try
        keep = []
        for version in sorted(on_disk, reverse=True):
            if len(keep) == self.num_versions:
                break
            if version in self._served:
                keep.append(version)
            elif version not in self._failed and self._load(version, on_disk[version]):
                keep.append(version)
        with self._condition:
            for version in set(self._served) - set(keep):
                retired.append(self._served.pop(version))
                log.info("Unloading version %s of %s", version, self.name)
        for worker in retired:
            self._retire(worker)
        return self.versions()

    def _load(self, version, path):
        seen = fingerprint(path)
        with self._condition:
            self._loading = version
        try:
            worker = self._start_worker(path, version)
        except LoadError as error:
            log.error("Could not load version %s of %s: %s", version, self.name, error)
            with self._condition:
                self._failed[version] = (seen, str(error))
            return False
        finally:
            with self._condition:
                self._loading = None
        with self._condition:
            self._served[version] = worker
        log.info("Serving version %s of %s", version, self.name)
        return True

    def _retire(self, worker):
        with self._condition:
            if not self._condition.wait_for(lambda: self._leases[worker] == 0, timeout=self._retire_seconds):
                log.error("Unloading version %s with %d requests still running", worker.version, self._leases[worker])
            self._leases.pop(worker, None)
        worker.close()

    def close(self):
        with self._condition:
            workers, self._served = list(self._served.values()), {}
        for worker in workers:
            worker.close()

    # === Serving ===

    def versions(self):
        with self._condition:
            return sorted(self._served)

    @contextlib.contextmanager
    def use(self, version=None):
        """The newest served version (or `version`) for one request; `RequestError` 404/503 if none."""
        with self._condition:
            worker = self._served.get(max(self._served) if version is None and self._served else version)
            if worker is None:
                raise self._not_served(version)
            self._leases[worker] += 1
        try:
            yield worker
        finally:
            with self._condition:
                self._leases[worker] -= 1
                self._condition.notify_all()

    def _not_served(self, version):
        if version is None:
            return RequestError(f"No version of model {self.name!r} is available: {self._why_none()}.", status=503)
        if version == self._loading:
            return RequestError(f"Version {version} of model {self.name!r} is still loading.", status=503)
        if version in self._failed:
            return RequestError(f"Version {version} of model {self.name!r} could not be loaded: {self._failed[version][1]}", status=404)
        return RequestError(
            f"Version {version} of model {self.name!r} is not available; serving versions {sorted(self._served)}.", status=404
        )

    def _why_none(self):
        reasons = [f"version {v} failed to load ({reason})" for v, (_, reason) in sorted(self._failed.items(), reverse=True)]
        if self._loading is not None:
            reasons.insert(0, f"version {self._loading} is loading")
        return "; ".join(reasons) or f"no version folder with a saved_model.pb under {self.base_path}"

    def status(self, version=None):
        """`(ready, TF Serving's model_version_status entries, why not ready)`; `RequestError` 404 for an unknown version.

        Ready means: some version is AVAILABLE (for the model), or that version is (for a version).
        """
        with self._condition:
            states = {v: ("AVAILABLE", "OK", "") for v in self._served}
            states.update({v: ("END", "UNKNOWN", reason) for v, (_, reason) in self._failed.items()})
            if self._loading is not None:
                states[self._loading] = ("LOADING", "OK", "")
            if version is not None:
                if version not in states:
                    raise self._not_served(version)
                states = {version: states[version]}
            ready = version in self._served if version is not None else bool(self._served)
            why = None if ready else str(self._not_served(version))
        entries = [{"version": str(v), "state": state, "status": {"error_code": code, "error_message": message}}
                   for v, (state, code, message) in sorted(states.items())]
        return ready, entries, why
