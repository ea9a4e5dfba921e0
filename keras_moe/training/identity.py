"""Run identity: a run's name, and what makes two configurations the same run.

The rule (docs/runs.md): a run is named after its recipe (`shakespeare_moe` when none is given). Every
override that changes what is trained (model, router, experts, data, optimizer, trainer length, seed:
anything but the run mechanics below) adds a suffix: 8 hex digits of a hash of those overrides, e.g.
`keras-moe train model/router=switch` -> `shakespeare_moe-3f1c0b2a`. The same command line gives the
same name, so `keras-moe evaluate/generate/export` with the same overrides find the run; `name=...`
chooses a name outright. The run folder (`outputs/<name>/`) and the export (`saved_models/<name>/`)
follow the name, so every job of a sweep gets its own.

Run mechanics change how a run is carried out or reported, not what it trains; they neither change
the name nor count as a different configuration when a run resumes.
"""

import hashlib

from hydra.core.override_parser.overrides_parser import OverridesParser

RUN_MECHANICS = (
    "name", "recipe", "recipes", "output_root", "output_dir", "export", "strategy",
    "trainer.verbose", "trainer.tensorboard", "trainer.checkpoint", "trainer.backup_freq", "trainer.resume",
    "trainer.sample_length", "trainer.sampler", "trainer.validation_steps", "trainer.jit_compile",
)
DEFAULT_BASE = "run"  # the name's base when a command line removes the recipe (`recipe=null`)


def is_mechanics(key):
    """True for a dotted (or `/`-separated group) key that is, or lies under, a run-mechanics key."""
    key = key.replace("/", ".")
    return any(key == m or key.startswith(m + ".") for m in RUN_MECHANICS)


def identity_overrides(overrides):
    """The canonical `key=value` strings of the overrides that change what is trained, sorted."""
    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    kept = []
    for override in parsed:
        if override.is_hydra_override() or is_mechanics(override.key_or_group):
            continue
        if override.is_delete() and override.value() is None:
            kept.append(override.get_key_element())
        else:
            kept.append(f"{override.get_key_element()}={override.get_value_element_as_str()}")
    return sorted(kept)


def run_name(recipe, overrides):
    """`recipe` (or `run`), plus `-<8 hex digits>` when `overrides` change what is trained."""
    base = str(recipe) if recipe not in (None, "null", "") else DEFAULT_BASE
    changes = identity_overrides(overrides or [])
    if not changes:
        return base
    digest = hashlib.sha256("\n".join(changes).encode()).hexdigest()[:8]
    return f"{base}-{digest}"


def config_differences(saved, current, prefix=""):
    """`["key: saved -> current", ...]` for every leaf that differs, run mechanics left out."""
    differences = []
    for key in sorted(set(saved) | set(current), key=str):
        path = f"{prefix}{key}"
        if is_mechanics(path):
            continue
        old, new = saved.get(key, "(absent)"), current.get(key, "(absent)")
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, prefix=f"{path}.")
        elif old != new:
            differences.append(f"{path}: {old!r} -> {new!r}")
    return differences
