"""SavedModel export in TensorFlow Serving's layout: `<root>/<name>/<version>/`, written atomically.

    keras_moe.export.export_saved_model(model, "saved_models", "shakespeare_moe")
    # -> saved_models/shakespeare_moe/3/ with saved_model.pb, variables/, assets/

The SavedModel holds the signatures that `keras_moe.export.signatures_for(model)` builds (raw
inputs; `serving_default` always; each model family registers its own next to the model, e.g.
`keras_moe/models/moe_transformer/serving.py`), tagged `serve`, written with Keras's `ExportArchive`. The export
goes to a hidden folder beside the versions (`.<version>-xxxx`) and becomes visible with one
`os.rename`, so a server polling the folder never sees a half-written version; staging folders of the
same version that a killed export left behind are removed first. `assets={"file name": text}` adds
files to the SavedModel's `assets/` folder (e.g. the config that trained the model): they travel with
the version, and TF Serving and `tf.saved_model.load` ignore asset files that no graph op reads.
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


def remove_stale_staging(target_root, version):
    """Removes the hidden staging folders `.<version>-*` that an interrupted export of `version` left."""
    prefix = f".{version}-"
    for entry in os.listdir(target_root):
        if entry.startswith(prefix) and os.path.isdir(os.path.join(target_root, entry)):
            shutil.rmtree(os.path.join(target_root, entry), ignore_errors=True)


def write_assets(export_dir, assets):
    """Writes `{file name: text}` into `export_dir/assets/` (plain file names only)."""
    for filename, text in (assets or {}).items():
        if not isinstance(filename, str) or not filename or os.sep in filename or filename.startswith("."):
            raise ValueError(f"An asset name must be a plain file name. Received: {filename!r}")
        os.makedirs(os.path.join(export_dir, "assets"), exist_ok=True)
        with open(os.path.join(export_dir, "assets", filename), "w") as handle:
            handle.write(text)


def export_saved_model(model, root, name, version=None, assets=None):
    """Exports `model` to `root/name/<version>/` (default: the next version) and returns that path.

    `assets`: optional `{file name: text}` written into the SavedModel's `assets/` folder.
    """
    if not isinstance(name, str) or not name or os.sep in name or name.startswith("."):
        raise ValueError(f"The model name must be a non-empty folder name without '{os.sep}'; received name={name!r}.")
    target_root = os.path.join(root, name)
    os.makedirs(target_root, exist_ok=True)
    version = next_version(target_root) if version is None else check_positive_int("version", version)
    final = os.path.join(target_root, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"Version {version} of {name!r} already exists at {final}; versions are never overwritten.")
    remove_stale_staging(target_root, version)
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=target_root)
    try:
        export_dir = write_saved_model(model, os.path.join(staging, "model"))
        write_assets(export_dir, assets)
        os.rename(export_dir, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
