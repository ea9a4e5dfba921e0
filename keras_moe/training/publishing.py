"""A run's SavedModel export, carried out so that a kill at any instant costs nothing.

The version is chosen once and recorded in `metrics.json` (`export.version`) before anything is
written, so a rerun after a kill exports that same version (never a second one); the export itself is
atomic (a staging folder renamed into place, `keras_moe.export`), and a finished version whose
`assets/keras_moe_config.yaml` holds this run's config is taken as this run's export. The export is
always made from the saved `model.keras`, so a first export and one after a kill are the same.
"""

import os

import yaml

from keras_moe.export import export_saved_model, next_version
from keras_moe.training.identity import config_differences
from keras_moe.training.run_folder import CONFIG_ASSET, config_yaml


def exported_config(path):
    """The config in a SavedModel's `assets/keras_moe_config.yaml`, or None."""
    asset = os.path.join(path, "assets", CONFIG_ASSET)
    if not os.path.isfile(asset):
        return None
    with open(asset) as handle:
        return yaml.safe_load(handle)


def publish(folder, cfg, config, metrics):
    """Exports the run's `model.keras` unless already done; returns the updated metrics."""
    root = os.path.join(cfg.export.root, cfg.name)
    version = (metrics.get("export") or {}).get("version")
    path = None if version is None else os.path.join(root, str(version))
    if path is not None and os.path.isdir(path):
        saved = exported_config(path)
        if saved is None or config_differences(saved, config):  # another export took this version meanwhile
            version = path = None
    if version is None:
        version = next_version(root)
        path = os.path.join(root, str(version))
        metrics = {**metrics, "export": {"version": version}}
        folder.write_metrics(metrics)
    if not os.path.isdir(path):
        export_saved_model(folder.load_model(), cfg.export.root, cfg.name, version=version, assets={CONFIG_ASSET: config_yaml(config)})
    metrics = {**metrics, "saved_model": path}
    folder.write_metrics(metrics)
    return metrics
