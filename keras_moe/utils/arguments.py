"""Constructor arguments as data: defaults and checks for configs given as dicts (e.g. from Hydra)."""

import inspect

SERIALISATION_KEYS = ("name", "trainable", "dtype")


def constructor_defaults(cls):
    """`{argument: default}` of `cls.__init__` (arguments without a default are left out)."""
    parameters = inspect.signature(cls.__init__).parameters
    return {n: p.default for n, p in parameters.items() if p.default is not inspect.Parameter.empty and n != "dtype"}


def complete_arguments(cls, config):
    """`config` (a `get_config()` or constructor keywords) with `cls`'s defaults filled in.

    Drops the Keras serialisation keys; raises `ValueError` naming unknown or missing arguments.
    """
    parameters = inspect.signature(cls.__init__).parameters
    names = {n for n, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self", "dtype"}
    required = {n for n in names if parameters[n].default is inspect.Parameter.empty}
    config = {k: v for k, v in config.items() if k not in SERIALISATION_KEYS}
    unknown = set(config) - names
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} arguments: {sorted(unknown)}")
    missing = required - set(config)
    if missing:
        raise ValueError(f"{cls.__name__} needs the arguments {sorted(missing)}")
    return {**constructor_defaults(cls), **config}
