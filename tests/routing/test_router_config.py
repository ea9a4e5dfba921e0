"""Router argument validation, the router registry and get_config / from_config round trips."""

import inspect

import keras
import numpy as np
import pytest

import keras_moe.routing as routing
from keras_moe.routing import (
    DenseGate,
    ExpertChoiceRouter,
    NoisyTopKRouter,
    SigmoidRouter,
    SoftMoERouter,
    SwitchRouter,
    TopKRouter,
)
from tests.conftest import random_tokens

ALL_ROUTERS = [TopKRouter, SwitchRouter, NoisyTopKRouter, ExpertChoiceRouter, SoftMoERouter, SigmoidRouter, DenseGate]


def raises_naming(name, value, fn, *args, **kwargs):
    """`fn` raises ValueError whose message names the argument and the bad value."""
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert name in message and repr(value) in message, (getattr(fn, "__name__", fn), message)


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_experts", [0, -2, 2.5])
def test_bad_num_experts(num_experts):
    for cls in ALL_ROUTERS:
        raises_naming("num_experts", num_experts, cls, num_experts=num_experts)


@pytest.mark.parametrize("top_k", [5, 0])
def test_bad_top_k(top_k):
    for cls in (TopKRouter, NoisyTopKRouter, SigmoidRouter):
        raises_naming("top_k", top_k, cls, num_experts=4, top_k=top_k)


@pytest.mark.parametrize("jitter_noise", [1.5, 1.0, -0.1])
def test_bad_jitter_noise(jitter_noise):
    for cls in ALL_ROUTERS:
        raises_naming("jitter_noise", jitter_noise, cls, num_experts=4, jitter_noise=jitter_noise)


NEGATIVE_WEIGHTS = [
    (cls, name)
    for cls in ALL_ROUTERS
    for name in inspect.signature(cls.__init__).parameters
    if name.endswith("_loss_weight")
] + [(SigmoidRouter, "bias_update_rate"), (NoisyTopKRouter, "noise_epsilon")]


def test_negative_loss_weights():
    assert len(NEGATIVE_WEIGHTS) >= 10
    for cls, name in NEGATIVE_WEIGHTS:
        raises_naming(name, -0.5, cls, num_experts=4, **{name: -0.5})


def test_bad_capacity_factor():
    for capacity_factor in [0, -1.0, float("nan")]:
        raises_naming("capacity_factor", capacity_factor, ExpertChoiceRouter, num_experts=4, capacity_factor=capacity_factor)


def test_other_bad_arguments():
    for cls, name, value in [
        (ExpertChoiceRouter, "min_expert_capacity", 0),
        (SoftMoERouter, "num_slots", 0),
        (SoftMoERouter, "normalize", "yes"),
        (TopKRouter, "normalize_top_k", 1),
        (SigmoidRouter, "routed_scaling_factor", 0.0),
    ]:
        raises_naming(name, value, cls, num_experts=4, **{name: value})


def test_unknown_registry_name():
    raises_naming("nope", "nope", routing.get, "nope", num_experts=4)


def test_bad_registry_identifier_type():
    with pytest.raises(ValueError, match="router"):
        routing.get(3, num_experts=4)


# --- registry --------------------------------------------------------------------------------------


def test_get_by_name():
    router = routing.get("top_k", num_experts=4, top_k=2)
    assert type(router) is TopKRouter
    assert router.num_experts == 4 and router.top_k == 2 and not router.built


def test_get_fills_defaults_only_when_accepted_and_unset():
    router = routing.get("top_k", num_experts=4, top_k=3, load_balancing_loss_weight=0.5, num_slots=7)
    assert router.load_balancing_loss_weight == 0.5 and router.top_k == 3
    assert not hasattr(router, "num_slots")
    given = {"class_name": "top_k", "config": {"load_balancing_loss_weight": 0.2}}
    assert routing.get(given, num_experts=4, load_balancing_loss_weight=0.5).load_balancing_loss_weight == 0.2


@pytest.mark.parametrize("cls", ALL_ROUTERS, ids=lambda c: c.__name__)
def test_get_clones_a_router_instance(cls):
    original = cls(**NON_DEFAULT[cls], seed=5)
    tokens = random_tokens(2, 3, 8) if cls is SoftMoERouter else random_tokens(3, 8)
    original(tokens)  # built, with weights
    clone = routing.get(original, num_experts=6)
    assert type(clone) is cls and clone is not original
    assert not clone.built
    without_name = lambda config: {k: v for k, v in config.items() if k != "name"}  # noqa: E731
    assert clone.name != original.name  # a clone gets its own name: blocks never share weight paths
    assert without_name(clone.get_config()) == without_name(original.get_config())


def test_get_from_dict():
    router = routing.get({"class_name": "switch", "config": {"load_balancing_loss_weight": 0.02}}, num_experts=4)
    assert type(router) is SwitchRouter
    assert router.num_experts == 4 and router.top_k == 1 and router.load_balancing_loss_weight == 0.02


def test_get_from_dict_with_registered_class_name():
    router = routing.get({"class_name": "keras_moe>SigmoidRouter", "config": {"top_k": 3}}, num_experts=4)
    assert type(router) is SigmoidRouter and router.top_k == 3


@pytest.mark.parametrize(
    "identifier",
    [TopKRouter(num_experts=8), {"class_name": "top_k", "config": {"num_experts": 8}}],
    ids=["instance", "dict"],
)
def test_get_num_experts_mismatch(identifier):
    with pytest.raises(ValueError, match="num_experts"):
        routing.get(identifier, num_experts=4)


def test_top_k_lives_in_the_router():
    # Defaults only fill what the identifier leaves unset; a router that takes no top_k ignores it.
    assert routing.get(TopKRouter(num_experts=4, top_k=3), num_experts=4, top_k=2).top_k == 3
    assert not hasattr(routing.get("expert_choice", num_experts=4, top_k=2), "top_k")
    assert routing.get("switch", num_experts=4).top_k == 1
    with pytest.raises(ValueError, match="top_k=2"):
        routing.get({"class_name": "switch", "config": {"top_k": 2}}, num_experts=4)
    from keras_moe.layers import MoELayer

    with pytest.raises(ValueError, match="belongs to the router"):
        MoELayer(num_experts=4, intermediate_dim=8, top_k=2)


def test_get_rejects_unknown_dict_keys():
    with pytest.raises(ValueError, match="top_k"):
        routing.get({"class_name": "top_k", "top_k": 1}, num_experts=4)


def test_register_router():
    class MyRouter(TopKRouter):
        pass

    try:
        routing.register_router("my_router_for_test", MyRouter)
        assert type(routing.get("my_router_for_test", num_experts=4)) is MyRouter
    finally:
        routing.ROUTERS.pop("my_router_for_test", None)
    with pytest.raises(ValueError, match="cls"):
        routing.register_router("bad", object)


# --- get_config round trip -------------------------------------------------------------------------


def initializer():
    return keras.initializers.RandomNormal(mean=0.1, stddev=0.3, seed=11)


COMMON = dict(router_z_loss_weight=0.02, jitter_noise=0.1, use_bias=True, kernel_initializer=initializer(), seed=7)
NON_DEFAULT = {
    TopKRouter: dict(num_experts=6, top_k=3, normalize_top_k="always", load_balancing_loss_weight=0.05),
    SwitchRouter: dict(num_experts=6, load_balancing_loss_weight=0.05),
    NoisyTopKRouter: dict(num_experts=6, top_k=3, importance_loss_weight=0.2, load_loss_weight=0.3, noise_epsilon=0.05),
    ExpertChoiceRouter: dict(num_experts=6, capacity_factor=1.5, min_expert_capacity=3),
    SoftMoERouter: dict(num_experts=6, num_slots=2, normalize=False),
    SigmoidRouter: dict(
        num_experts=6, top_k=3, bias_update_rate=0.01, routed_scaling_factor=2.5, load_balancing_loss_weight=0.01
    ),
    DenseGate: dict(num_experts=6, entropy_loss_weight=0.1),
}


def normalise(value):
    if isinstance(value, keras.initializers.Initializer):
        return keras.initializers.serialize(value)
    return value


@pytest.mark.parametrize("cls", ALL_ROUTERS, ids=lambda c: c.__name__)
def test_get_config_round_trip(cls):
    kwargs = {**NON_DEFAULT[cls], **COMMON}
    signature = inspect.signature(cls.__init__).parameters
    arguments = [n for n, p in signature.items() if n != "self" and p.kind is not p.VAR_KEYWORD]
    # The test passes every argument, each different from its default.
    assert sorted(kwargs) == sorted(arguments)
    for name in arguments:
        default = signature[name].default
        assert default is inspect.Parameter.empty or normalise(default) != normalise(kwargs[name]), name

    router = cls(**kwargs)
    config = router.get_config()
    for name in arguments:
        assert name in config, name
        assert config[name] == normalise(kwargs[name]), name

    restored = cls.from_config(config)
    assert type(restored) is cls
    assert restored.get_config() == config
    assert normalise(restored.kernel_initializer) == normalise(initializer())


@pytest.mark.parametrize("cls", ALL_ROUTERS, ids=lambda c: c.__name__)
def test_restored_router_routes_identically(cls):
    kwargs = {**NON_DEFAULT[cls], "jitter_noise": 0.0}
    tokens = random_tokens(2, 4, 5, seed=3) if cls is SoftMoERouter else random_tokens(8, 5, seed=3)
    router = cls(**kwargs)
    router(tokens)
    restored = cls.from_config(router.get_config())
    restored.build(tokens.shape)
    restored.set_weights(router.get_weights())
    a, b = router(tokens), restored(tokens)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(a.router_probs), keras.ops.convert_to_numpy(b.router_probs))


def test_router_without_a_routing_rule_is_refused():
    from keras_moe.routing import Router

    with pytest.raises(TypeError, match="route"):
        Router(num_experts=4)
