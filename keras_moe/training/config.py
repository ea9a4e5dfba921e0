"""Where the Hydra configs are, and composing them outside a `@hydra.main` job.

Configs come from exactly one place, chosen by where `keras_moe` itself was imported from:

- a source checkout (an editable install, or `python -m keras_moe.cli.main` in the repository): the
  repository's top-level `conf/` (the primary config and its groups) and `recipes/` (the `recipes`
  group), read as `file://` folders;
- an installed wheel: its own copy, the package `keras_moe.conf` with `recipes/` inside it, read as
  `pkg://keras_moe.conf` (setup.py ships the two folders inside the package).

`KERAS_MOE_CONFIG_DIR` (folders separated by `os.pathsep`) adds the user's own config folders to
Hydra's search path: `<dir>/recipes/<name>.yaml` is used as `recipe=<name>`, `<dir>/model/<name>.yaml`
as `model=<name>`, and so on. The recipe is chosen with `recipe=NAME` (the `recipes` group).
"""

import importlib.util
import os
import re
from pathlib import Path

from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from keras_moe.training.checks import check_name
from keras_moe.training.errors import ConfigError
from keras_moe.training.identity import run_name

CONFIG_MODULE = "keras_moe.conf"
USER_CONFIG_ENV = "KERAS_MOE_CONFIG_DIR"
RECIPE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

# `${keras_moe.mul:a,b}` in configs, e.g. a schedule's decay steps = epochs x steps per epoch.
if not OmegaConf.has_resolver("keras_moe.mul"):
    OmegaConf.register_new_resolver("keras_moe.mul", lambda a, b: int(a) * int(b))
# `name: ${keras_moe.run_name:${hydra:runtime.choices.recipes},${hydra:overrides.task}}` (identity.py).
if not OmegaConf.has_resolver("keras_moe.run_name"):
    OmegaConf.register_new_resolver("keras_moe.run_name", lambda recipe, overrides: run_name(recipe, list(overrides)))


def source_checkout():
    """The repository holding the imported `keras_moe` package, or None for an installed package."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "conf" / "config.yaml").is_file() and (root / "recipes").is_dir() else None


def primary_config_path():
    """`config_path` for `@hydra.main`: the checkout's `conf/` folder, or `pkg://keras_moe.conf`."""
    root = source_checkout()
    if root is not None:
        return str(root / "conf")
    if importlib.util.find_spec(CONFIG_MODULE) is None:
        raise FileNotFoundError(f"keras-moe's configs are missing: neither a source checkout nor the package {CONFIG_MODULE}.")
    return f"pkg://{CONFIG_MODULE}"


def search_path():
    """Extra Hydra search path entries: the checkout's root (for `recipes/`) and the user's folders."""
    entries = []
    root = source_checkout()
    if root is not None:
        entries.append(f"file://{root}")
    for folder in filter(None, os.environ.get(USER_CONFIG_ENV, "").split(os.pathsep)):
        if not os.path.isdir(folder):
            raise ConfigError(f"`{USER_CONFIG_ENV}` names a folder that does not exist. Received: {USER_CONFIG_ENV}={folder!r}")
        entries.append(f"file://{os.path.abspath(folder)}")
    return entries


def searchpath_override():
    """The `hydra.searchpath=[...]` override that adds `search_path()` (quoted: paths may hold spaces)."""
    quoted = ",".join("'" + entry.replace("\\", "\\\\").replace("'", "\\'") + "'" for entry in search_path())
    return f"hydra.searchpath=[{quoted}]"


def recipe_names():
    """The recipes this installation ships (without the user's), sorted."""
    root = source_checkout()
    if root is not None:
        return sorted(p.stem for p in (root / "recipes").glob("*.yaml"))
    import importlib.resources

    folder = importlib.resources.files(CONFIG_MODULE) / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def translate_overrides(overrides):
    """`recipe=NAME` (the documented spelling) selects the `recipes` group. Every recipe name given
    (sweeps too) must be a config name, never a path, and every `name=` a plain folder name: checked
    here, before Hydra creates any run folder."""
    translated = []
    for override in overrides:
        key = override.partition("=")[0].lstrip("+~")
        if key in ("recipe", "recipes"):
            for name in _values(override):
                if name != "null" and not (RECIPE_NAME.fullmatch(name) and ".." not in name):
                    raise ConfigError(f"Invalid `recipe`: a recipe is a config name from recipes/ (letters, digits, "
                                      f"'_', '-', '.'), never a path. Received: recipe={name!r}")
            override = override.replace("recipe=", "recipes=", 1) if key == "recipe" else override
        elif key == "name":
            for name in _values(override):
                check_name(name)
        translated.append(override)
    return translated


def _values(override):
    """The value(s) an override sets, as strings (each value of a sweep)."""
    try:
        parsed = OverridesParser.create().parse_override(override)
    except Exception as error:  # Hydra's grammar errors name the override
        raise ConfigError(f"Invalid override {override!r}: {error}") from error
    if parsed.value() is None:
        return []
    return list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [parsed.get_value_element_as_str()]


def compose_config(overrides=()):
    """Composes the primary config with `overrides` (as the command line would), outside any run.

    The run's `name` (and so `output_dir`) is derived here as a `@hydra.main` job derives it.
    """
    GlobalHydra.instance().clear()
    path = primary_config_path()
    initialize = (initialize_config_module(CONFIG_MODULE, version_base="1.3") if path.startswith("pkg://")
                  else initialize_config_dir(config_dir=path, version_base="1.3"))
    with initialize:
        cfg = compose("config", overrides=translate_overrides(list(overrides)) + [searchpath_override()],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # `${hydra:...}` in `name` reads it
    with open_dict(cfg):
        cfg.name = cfg.name  # resolved now, while this config's Hydra settings are the current ones
        del cfg["hydra"]
    return cfg
