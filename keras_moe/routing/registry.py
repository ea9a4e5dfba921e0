"""Routers by registered name: pick a router by class or name, never by an if-chain.

Each router module registers its classes with `@register_router("name")`; `get` builds a fresh
router from a name, a `Router` instance or a `{"class_name", "config"}` dict.
"""

import inspect

import keras

from keras_moe.routing.router import Router

ROUTERS = {}


def register_router(name, cls=None):
    """Makes `cls` (a `Router` subclass) available as `get(name)`; a decorator when `cls` is omitted."""
    def register(cls):
        if not (inspect.isclass(cls) and issubclass(cls, Router)):
            raise ValueError(f"`cls` must be a subclass of keras_moe.routing.Router. Received: cls={cls!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"A router's registered name must be a non-empty string. Received: name={name!r}")
        ROUTERS[name] = cls
        return cls

    return register if cls is None else register(cls)


def _accepts(cls, argument):
    return argument in inspect.signature(cls.__init__).parameters


def get(identifier, num_experts, **defaults):
    """Returns a new, unbuilt router.

    Args:
        identifier: a registered name (`"top_k"`, `"switch"`, ...), a `Router` instance (cloned from
            its config, so layers never share router weights), or a dict
            `{"class_name": name_or_registered_class, "config": {...}}` (e.g.
            `{"class_name": "top_k", "config": {"top_k": 1}}`).
        num_experts: int, filled in when the identifier does not set it; must match when it does.
        **defaults: further arguments filled in when the router accepts them and the identifier
            does not set them.
    """
    if isinstance(identifier, dict) and "module" in identifier:  # a serialised Router (Keras format)
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, Router):
        cls, config = type(identifier), identifier.get_config()
        config.pop("name", None)  # a clone gets a name of its own
    elif isinstance(identifier, str):
        cls, config = _lookup(identifier), {}
    elif isinstance(identifier, dict) and "class_name" in identifier:
        unknown = set(identifier) - {"class_name", "config"}
        if unknown:
            raise ValueError(f"A router dict takes `class_name` and `config` only; unknown keys {sorted(unknown)} in {identifier!r}")
        cls, config = _lookup(identifier["class_name"]), dict(identifier.get("config") or {})
    else:
        raise ValueError(
            "`router` must be a registered name, a Router instance or a dict with `class_name` and "
            f"`config`. Received: router={identifier!r}"
        )
    if config.get("num_experts", num_experts) != num_experts:
        raise ValueError(
            f"The router's `num_experts` ({config['num_experts']}) differs from the layer's "
            f"`num_experts` ({num_experts})."
        )
    config["num_experts"] = num_experts
    for name, value in defaults.items():
        if _accepts(cls, name):
            config.setdefault(name, value)
    try:
        return cls.from_config(config)
    except TypeError as error:
        raise ValueError(f"Invalid arguments for router `{cls.__name__}`: {config}. {error}") from error


def _lookup(name):
    if inspect.isclass(name) and issubclass(name, Router):
        return name
    if isinstance(name, str) and name in ROUTERS:
        return ROUTERS[name]
    registered = keras.saving.get_registered_object(name) if isinstance(name, str) else None
    if registered is not None and inspect.isclass(registered) and issubclass(registered, Router):
        return registered
    raise ValueError(f"Unknown router {name!r}. Registered routers: {sorted(ROUTERS)}")


def reject_top_k(kwargs):
    """`top_k` belongs to the router: a clear error for the old spelling."""
    if "top_k" in kwargs:
        raise ValueError(
            "`top_k` belongs to the router: pass router={'class_name': 'top_k', 'config': {'top_k': "
            f"{kwargs['top_k']!r}}} (or a Router instance). Received: top_k={kwargs['top_k']!r}"
        )
