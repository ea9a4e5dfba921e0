"""SavedModel export: `root/<name>/<version>/`, written atomically."""

import os
import shutil
import tempfile

import keras


def next_version(root):
    """1 + the highest integer version folder under `root` (TF Serving's layout)."""
    versions = [int(d) for d in os.listdir(root) if d.isdigit()] if os.path.isdir(root) else []
    return max(versions, default=0) + 1


def export_saved_model(model, root, name):
    """Writes `root/name/<version>/` atomically: export to a hidden folder, then one rename."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("SavedModel export needs the TensorFlow backend (KERAS_BACKEND=tensorflow).")
    target_root = os.path.join(root, name)
    os.makedirs(target_root, exist_ok=True)
    version = next_version(target_root)
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=target_root)
    try:
        export_dir = os.path.join(staging, "model")
        model.export(export_dir, format="tf_saved_model", verbose=False)
        final = os.path.join(target_root, str(version))
        os.rename(export_dir, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
