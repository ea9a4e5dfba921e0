"""SavedModel export in TensorFlow Serving's layout: `<root>/<name>/<version>/`, written atomically.

    keras_moe.export.export_saved_model(model, "saved_models", "shakespeare_moe")
    # -> saved_models/shakespeare_moe/3/ with saved_model.pb, variables/, assets/

The SavedModel holds the signatures that `keras_moe.export.signatures_for(model)` builds (raw
inputs; `serving_default` always; each model family registers its own next to the model, e.g.
`keras_moe/models/moe_transformer/serving.py`), tagged `serve`, written with Keras's `ExportArchive`. The export
goes to a hidden folder beside the versions and becomes visible with one `os.rename`, so a server
polling the folder never sees a half-written version.
"""

import os
import re
import shutil
import tempfile

import keras

from keras_moe.export.signatures import signatures_for
from keras_moe.utils.validation import check_positive_int


def next_version(root):
    """1 + the highest integer version folder under `root` (TF Serving's layout)."""
    return max(list_versions(root), default=0) + 1


def list_versions(root):
    """Sorted integer version folders under `root` (hidden or non-integer entries are ignored).

    Only ASCII digits count: `str.isdigit` also accepts names like '²' that `int` refuses.
    """
    if not os.path.isdir(root):
        return []
    return sorted(int(d) for d in os.listdir(root) if re.fullmatch(r"[0-9]+", d) and os.path.isdir(os.path.join(root, d)))


def write_saved_model(model, path):
    """Writes `model`'s serving signatures as a SavedModel at `path` (which must not exist)."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"SavedModel export needs the TensorFlow backend (KERAS_BACKEND=tensorflow); this process runs "
            f"{keras.backend.backend()!r}. Train or load the model under TensorFlow to export it."
        )
    functions = signatures_for(model)  # builds the preprocessor
    archive = keras.export.ExportArchive()
    archive.track(model)
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is not None:
        archive.track(preprocessor)
    for name in ["serving_default"] + sorted(set(functions) - {"serving_default"}):
        archive.add_endpoint(name, functions[name])
    archive.write_out(path, verbose=False)
    return path


def export_saved_model(model, root, name, version=None):
    """Exports `model` to `root/name/<version>/` (default: the next version) and returns that path."""
    if not isinstance(name, str) or not name or os.sep in name or name.startswith("."):
        raise ValueError(f"The model name must be a non-empty folder name without '{os.sep}'; received name={name!r}.")
    target_root = os.path.join(root, name)
    os.makedirs(target_root, exist_ok=True)
    version = next_version(target_root) if version is None else check_positive_int("version", version)
    final = os.path.join(target_root, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"Version {version} of {name!r} already exists at {final}; versions are never overwritten.")
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=target_root)
    try:
        export_dir = write_saved_model(model, os.path.join(staging, "model"))
        os.rename(export_dir, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
