"""Files written so that a kill at any instant leaves either the old file or the new one, never half
of one: each is written to a temporary file beside its target (`.tmp-*`, removed by the next run in
that folder, see `RunFolder`) and renamed over it (`os.replace`, atomic on POSIX file systems)."""

import contextlib
import json
import os
import tempfile

TEMPORARY_PREFIX = ".tmp-"


@contextlib.contextmanager
def replacing(path):
    """Yields a temporary path beside `path` (same suffix); renames it over `path` when the block ends."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(path)
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    handle, temporary = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{name.split('.')[0]}-", suffix=suffix, dir=directory)
    os.close(handle)
    os.remove(temporary)  # writers such as h5py and Keras's `.keras` zip create the file themselves
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text_atomic(path, text):
    with replacing(path) as temporary:
        with open(temporary, "w") as handle:
            handle.write(text)


def write_json_atomic(path, payload):
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=float))
