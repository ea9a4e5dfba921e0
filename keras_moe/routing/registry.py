"""Routers by registered name: pick a router by class or name, never by an if-chain."""

import inspect

import keras

from keras_moe.routing.dense_gate import DenseGate
from keras_moe.routing.expert_choice_router import ExpertChoiceRouter
from keras_moe.routing.noisy_top_k_router import NoisyTopKRouter
from keras_moe.routing.router import Router
from keras_moe.routing.sigmoid_router import SigmoidRouter
from keras_moe.routing.soft_moe_router import SoftMoERouter
from keras_moe.routing.switch_router import SwitchRouter
from keras_moe.routing.top_k_router import TopKRouter

ROUTERS = {
    "top_k": TopKRouter,
    "noisy_top_k": NoisyTopKRouter,
    "switch": SwitchRouter,
    "expert_choice": ExpertChoiceRouter,
    "soft": SoftMoERouter,
    "sigmoid": SigmoidRouter,
    "dense": DenseGate,
}


def register_router(name, cls):
    """Makes `cls` (a `Router` subclass) available as `get(name)`."""
    if not (inspect.isclass(cls) and issubclass(cls, Router)):
        raise ValueError(f"`cls` must be a subclass of keras_moe.routing.Router. Received: cls={cls!r}")
    ROUTERS[name] = cls
    return cls


def _accepts(cls, argument):
    return argument in inspect.signature(cls.__init__).parameters


def get(identifier, num_experts, top_k=None, **defaults):
    """Returns a new, unbuilt router.

    Args:
        identifier: a registered name (`"top_k"`, `"switch"`, ...), a `Router` instance (cloned from
            its config, so layers never share router weights), or a dict
            `{"class_name": name_or_registered_class, "config": {...}}`.
        num_experts: int, filled in when the identifier does not set it; must match when it does.
        top_k: optional int, filled in for routers that take `top_k`.
        **defaults: further arguments filled in when the router accepts them and the identifier
            does not set them.
    """
    if isinstance(identifier, dict) and "module" in identifier:  # a serialised Router (Keras format)
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, Router):
        cls, config = type(identifier), identifier.get_config()
    elif isinstance(identifier, str):
        cls, config = _lookup(identifier), {}
    elif isinstance(identifier, dict) and "class_name" in identifier:
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
    if top_k is not None:
        if cls is SwitchRouter or issubclass(cls, SwitchRouter):
            config["top_k"] = top_k  # SwitchRouter accepts only 1 and says so
        elif not _accepts(cls, "top_k"):
            raise ValueError(f"Router `{cls.__name__}` does not take `top_k`. Received: top_k={top_k!r}")
        elif config.setdefault("top_k", top_k) != top_k:
            raise ValueError(f"The router's `top_k` ({config['top_k']}) differs from the layer's `top_k` ({top_k}).")
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
