"""The version policy of `ModelVersions` (TF Serving's model manager, `latest` N), with stand-in workers.

Folders are real; loading is faked: a version loads unless its folder holds a file `broken`.
The real worker processes are tested end to end in test_server_versions.py.
"""

import os
import shutil
import time

import pytest

from keras_moe.serving.specs import RequestError
from keras_moe.serving.versions import ModelVersions
from keras_moe.serving.workers import LoadError


class FakeWorker:
    def __init__(self, path, version):
        if os.path.exists(os.path.join(path, "broken")):
            raise LoadError(f"version {version} is broken")
        self.version, self.closed, self.dead = version, False, False

    def alive(self):
        return not self.dead

    def close(self):
        self.closed = True


def write_version(root, version, broken=False):
    folder = os.path.join(root, str(version))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "saved_model.pb"), "w") as handle:
        handle.write("pb")
    if broken:
        with open(os.path.join(folder, "broken"), "w") as handle:
            handle.write("x")
    return folder


def repair(root, version):
    os.remove(os.path.join(root, str(version), "broken"))


def manager(root, num_versions=2):
    return ModelVersions("m", str(root), num_versions=num_versions, start_worker=FakeWorker, retire_seconds=1)


def test_serves_the_newest_n_loadable_versions_and_failures_do_not_count(tmp_path):
    for version in (1, 2):
        write_version(tmp_path, version)
    model = manager(tmp_path)
    assert model.poll() == [1, 2]
    write_version(tmp_path, 3, broken=True)
    write_version(tmp_path, 4, broken=True)
    assert model.poll() == [1, 2]  # two broken versions do not push out the good ones
    ready, entries, _ = model.status()
    assert ready and [(e["version"], e["state"]) for e in entries] == [("1", "AVAILABLE"), ("2", "AVAILABLE"), ("3", "END"), ("4", "END")]
    assert "version 4 is broken" in entries[3]["status"]["error_message"]
    with model.use() as worker:
        assert worker.version == 2


def test_a_served_version_stays_until_a_newer_one_has_loaded(tmp_path):
    write_version(tmp_path, 1)
    model = manager(tmp_path, num_versions=1)
    assert model.poll() == [1]
    with model.use() as old:
        pass
    write_version(tmp_path, 2, broken=True)
    assert model.poll() == [1] and not old.closed
    write_version(tmp_path, 3)
    assert model.poll() == [3] and old.closed


def test_a_failed_version_is_retried_when_its_folder_changes(tmp_path):
    write_version(tmp_path, 1)
    write_version(tmp_path, 2, broken=True)  # e.g. caught half-copied
    model = manager(tmp_path)
    assert model.poll() == [1]
    with pytest.raises(RequestError, match="Version 2 of model 'm' could not be loaded: version 2 is broken") as error:
        with model.use(2):
            pass
    assert error.value.status == 404
    assert model.poll() == [1]  # unchanged folder: not retried
    repair(tmp_path, 2)
    assert model.poll() == [1, 2]


def test_nothing_loadable_is_503_and_not_ready(tmp_path):
    write_version(tmp_path, 1, broken=True)
    model = manager(tmp_path)
    assert model.poll() == []
    message = r"No version of model 'm' is available: version 1 failed to load \(version 1 is broken\)"
    with pytest.raises(RequestError, match=message) as error:
        with model.use():
            pass
    assert error.value.status == 503
    ready, entries, why = model.status()
    assert not ready and entries[0]["state"] == "END" and "version 1 is broken" in why


def test_deleting_every_version_unloads_them_and_answers_503_then_404(tmp_path):
    for version in (1, 2):
        write_version(tmp_path, version)
    model = manager(tmp_path)
    model.poll()
    with model.use(2) as worker:
        pass
    for version in (1, 2):
        shutil.rmtree(os.path.join(tmp_path, str(version)))
    assert model.poll() == [] and worker.closed
    with pytest.raises(RequestError, match="no version folder with a saved_model.pb") as error:
        with model.use():
            pass
    assert error.value.status == 503
    with pytest.raises(RequestError, match=r"Version 2 of model 'm' is not available; serving versions \[\]") as error:
        model.status(2)
    assert error.value.status == 404


def test_a_crashed_worker_is_loaded_again(tmp_path):
    write_version(tmp_path, 1)
    model = manager(tmp_path)
    model.poll()
    with model.use() as first:
        first.dead = True
    model.poll()
    with model.use() as second:
        assert second is not first and second.version == 1


def test_an_unloaded_version_waits_for_the_requests_that_hold_it(tmp_path):
    write_version(tmp_path, 1)
    model = ModelVersions("m", str(tmp_path), num_versions=1, start_worker=FakeWorker, retire_seconds=30)
    model.poll()
    import threading

    with model.use() as held:
        write_version(tmp_path, 2)
        poller = threading.Thread(target=model.poll)
        poller.start()
        time.sleep(0.5)
        assert poller.is_alive() and not held.closed  # version 2 serves; version 1 waits for this request
        with model.use() as newest:
            assert newest.version == 2
    poller.join(5)
    assert held.closed


@pytest.mark.parametrize("name", ["²", "٣", "1a", "-1"])
def test_folders_that_are_not_ascii_integers_are_ignored(tmp_path, name):
    write_version(tmp_path, 1)
    os.makedirs(os.path.join(tmp_path, name))
    assert manager(tmp_path).poll() == [1]
