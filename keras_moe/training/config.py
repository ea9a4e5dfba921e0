"""Finding and composing the Hydra configs: `conf/` (groups) and `recipes/` (experiments)."""

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

# `${keras_moe.mul:a,b}` in configs, e.g. a schedule's decay steps = epochs x steps per epoch.
if not OmegaConf.has_resolver("keras_moe.mul"):
    OmegaConf.register_new_resolver("keras_moe.mul", lambda a, b: int(a) * int(b))


def project_root():
    """The folder holding `conf/` and `recipes/`: `$KERAS_MOE_ROOT`, the source checkout, or the cwd."""
    candidates = [os.environ.get("KERAS_MOE_ROOT"), Path(__file__).resolve().parents[2], Path.cwd()]
    for candidate in candidates:
        if candidate and (Path(candidate) / "conf" / "config.yaml").is_file():
            return Path(candidate).resolve()
    raise FileNotFoundError(
        "Cannot find conf/config.yaml: run keras-moe from the repository root or set KERAS_MOE_ROOT."
    )


def translate_overrides(overrides):
    """`recipe=NAME` (the documented spelling) selects the `recipes` group."""
    return [("recipes=" + o.split("=", 1)[1]) if o.startswith("recipe=") else o for o in overrides]


def searchpath_override():
    return f"hydra.searchpath=[file://{project_root()}]"


def compose_config(overrides=()):
    """Composes `conf/config.yaml` with `overrides` (as the command line would), outside any run."""
    root = project_root()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        return compose("config", overrides=translate_overrides(list(overrides)) + [searchpath_override()])
