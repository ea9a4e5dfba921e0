"""Checks of a run's own settings (name, seed, trainer, export), made before any data or model is
built; each error names the key and the value received. The data, model and optimizer groups are
checked by their classes as they are instantiated (`keras_moe.training.building`)."""

import re

from omegaconf import OmegaConf

from keras_moe.training.errors import ConfigError

RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _fail(key, rule, value):
    raise ConfigError(f"Invalid `{key}`: {rule}. Received: {key}={value!r}")


def _int(key, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        _fail(key, f"must be an integer >= {minimum}", value)


def _bool(key, value):
    if not isinstance(value, bool):
        _fail(key, "must be true or false", value)


def check_name(name):
    """A run name is one folder name: no path separators, no `..`, not hidden."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or ".." in name:
        _fail("name", "a run name is one folder name (letters, digits, '_', '-', '.'; no '/', no '..')", name)
    return name


def check_run_config(cfg):
    """Raises `ConfigError` for the first bad run setting of `cfg`, naming its key."""
    check_name(cfg.name)
    _int("seed", cfg.seed, 0)
    for key in ("output_dir", "export.root"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, str) or not value:
            _fail(key, "must be a non-empty path", value)
    trainer = cfg.trainer
    _int("trainer.epochs", trainer.epochs, 1)
    _int("trainer.steps_per_epoch", trainer.steps_per_epoch, 1)
    max_minutes = trainer.get("max_minutes")
    if max_minutes is not None and (isinstance(max_minutes, bool) or not isinstance(max_minutes, (int, float))
                                    or not max_minutes > 0):
        _fail("trainer.max_minutes", "must be null (no budget) or a number of minutes > 0", max_minutes)
    if trainer.validation_steps is not None:
        _int("trainer.validation_steps", trainer.validation_steps, 1)
    if trainer.backup_freq != "epoch":
        if not isinstance(trainer.backup_freq, int) or isinstance(trainer.backup_freq, bool) or trainer.backup_freq < 1:
            _fail("trainer.backup_freq", "must be 'epoch' or an integer >= 1 (steps between backups)", trainer.backup_freq)
    if trainer.verbose not in (0, 1, 2) or isinstance(trainer.verbose, bool):
        _fail("trainer.verbose", "must be 0 (silent), 1 (progress bar) or 2 (one line per epoch)", trainer.verbose)
    for key in ("checkpoint", "resume", "tensorboard"):
        _bool(f"trainer.{key}", trainer[key])
    if trainer.jit_compile != "auto" and not isinstance(trainer.jit_compile, bool):
        _fail("trainer.jit_compile", "must be true, false or auto (XLA on JAX only)", trainer.jit_compile)
    _int("trainer.sample_length", trainer.sample_length, 0)
    if not isinstance(trainer.sampler, str) or not trainer.sampler:
        _fail("trainer.sampler", "must be the name of a keras-hub sampler", trainer.sampler)
    _bool("export.enabled", cfg.export.enabled)
