"""ExpertBank: the four entry points agree, gate/up layouts, activations by value, biases and output scale."""

import numpy as np
import pytest
from keras import ops
from keras.src.testing import TestCase

from keras_moe.dispatch.dropless import grouped_order
from keras_moe.experts import ExpertBank, FeedForward, activations
from tests.conftest import random_tokens, to_numpy
from tests.contracts import assert_config_complete

E, H, F = 4, 8, 6


def bank(**kwargs):
    layer = ExpertBank(E, F, **kwargs)
    layer.build((None, H))
    for weight in layer.weights:  # non-zero biases and scales, so that a bug in applying them shows
        weight.assign(np.random.default_rng(len(weight.path)).normal(size=weight.shape).astype("float32") * 0.3)
    return layer


def numpy_expert(layer, x, e):
    """Expert `e` of `layer` on rows `x`, written out by hand for every layout and activation."""
    w = {name: to_numpy(v) for name, v in ((v.name, v) for v in layer.weights)}
    bias = lambda name: w[f"{name}_bias"][e] if layer.use_bias else 0.0  # noqa: E731
    if layer.gate_up_layout == "separate":
        gate, up = x @ w["gate_kernel"][e] + bias("gate"), x @ w["up_kernel"][e] + bias("up")
    else:
        hidden = x @ w["in_kernel"][e] + bias("in")
        gate, up = (hidden[:, 0::2], hidden[:, 1::2]) if layer.gate_up_layout == "interleaved" else np.split(hidden, 2, -1)
    act = layer.expert_activation
    if act.name == "swiglu":
        hidden = gate / (1 + np.exp(-gate)) * up
    elif act.name == "geglu_tanh":
        hidden = 0.5 * gate * (1 + np.tanh(np.sqrt(2 / np.pi) * (gate + 0.044715 * gate**3))) * up
    elif act.name == "clamped_swiglu":
        limit, alpha = act.params["limit"], act.params["alpha"]
        g, u = np.minimum(gate, limit), np.clip(up, -limit, limit)
        hidden = (u + 1) * g / (1 + np.exp(-alpha * g))
    out = hidden @ w["out_kernel"][e] + bias("out")
    return out * (w["output_scale"][e] if layer.use_output_scale else 1.0)


CASES = [
    dict(activation="swiglu"),
    dict(activation="swiglu", gate_up_layout="separate", use_bias=True),
    dict(activation="geglu_tanh", gate_up_layout="separate", use_output_scale=True),
    dict(activation={"name": "clamped_swiglu", "limit": 0.5, "alpha": 1.702}, gate_up_layout="interleaved", use_bias=True),
    dict(activation="clamped_swiglu", gate_up_layout="interleaved", use_bias=True, use_output_scale=True),
]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(str(v) if not isinstance(v, dict) else v["name"] for v in k.values()))
def test_every_entry_point_equals_the_hand_written_expert(kwargs):
    layer = bank(**kwargs)
    x = random_tokens(10, H) * 3.0  # large enough that the clamps bite
    expected_all = np.stack([numpy_expert(layer, x, e) for e in range(E)], axis=1)  # [t, e, h]
    np.testing.assert_allclose(to_numpy(layer.call_all(x)), expected_all, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(np.stack([x[:3]] * E))), np.stack([numpy_expert(layer, x[:3], e) for e in range(E)]),
                               rtol=1e-4, atol=1e-5)
    index = np.random.default_rng(0).integers(0, E, (10, 2)).astype("int32")
    weight = np.random.default_rng(1).random((10, 2)).astype("float32")
    gathered = to_numpy(layer.call_gathered(x, index, weight))  # [t, h]
    chosen = np.take_along_axis(expected_all, index[:, :, None], axis=1)  # [t, k, h]
    np.testing.assert_allclose(gathered, np.sum(chosen * weight[:, :, None], axis=1), rtol=1e-4, atol=1e-5)
    flat = index.reshape(-1)
    _, order, sizes = grouped_order(flat, E)
    rows = x[to_numpy(order) // 2]
    grouped = to_numpy(layer.call_grouped(rows, sizes))
    np.testing.assert_allclose(grouped, expected_all[to_numpy(order) // 2, flat[to_numpy(order)]], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("in_loop", [True, False], ids=["loop", "batched"])
@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(str(v) if not isinstance(v, dict) else v["name"] for v in k.values()))
def test_call_blocks_equals_the_hand_written_expert_in_both_forms(kwargs, in_loop, monkeypatch):
    """`call_blocks`: a loop of 2-D matmuls (JAX's form) and one batched matmul (the others') give each block its expert."""
    from keras_moe.experts import expert_math

    monkeypatch.setattr(expert_math, "blocks_in_loop", lambda: in_loop)
    layer = bank(**kwargs)
    blocks = (random_tokens(5 * 4, H) * 3.0).reshape(5, 4, H)
    block_expert = np.array([0, 0, 2, 3, 3], "int32")  # as the dispatch sorts them; expert 1 has no block
    expected = np.stack([numpy_expert(layer, blocks[i], e) for i, e in enumerate(block_expert)])
    np.testing.assert_allclose(to_numpy(layer.call_blocks(blocks, block_expert)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(str(v) if not isinstance(v, dict) else v["name"] for v in k.values()))
@pytest.mark.parametrize("own_backward", [True, False], ids=["own-backward", "autodiff"])
def test_call_blocks_gradients_equal_in_both_forms(kwargs, own_backward, monkeypatch):
    """The loop form (on JAX with its own backward pass: each block's weight gradient added into its
    expert's slice) gives the gradients autodiff gives the batched form, for inputs, kernels, biases and scale."""
    from keras_moe.experts import block_loop, expert_math
    from tests.dispatch.oracle import value_and_grads

    monkeypatch.setattr(block_loop, "OWN_BACKWARD_MIN_EXPERTS", 1 if own_backward else E + 1)
    layer = bank(**kwargs)
    blocks = random_tokens(5 * 4, H) * 3.0
    block_expert = np.array([0, 0, 2, 3, 3], "int32")  # two experts with two blocks each: their gradients add up
    ones, cotangent = np.ones((20, 1), "float32"), np.random.default_rng(2).normal(size=(20, H)).astype("float32")

    def fn(x, w):
        return ops.reshape(layer.call_blocks(ops.reshape(x, (5, 4, H)), block_expert), (20, H)) * w

    results = {}
    for in_loop in (True, False):
        monkeypatch.setattr(expert_math, "blocks_in_loop", lambda in_loop=in_loop: in_loop)
        results[in_loop] = value_and_grads(fn, layer, blocks, ones, cotangent)
    (loop_out, loop_grads), (batched_out, batched_grads) = results[True], results[False]
    np.testing.assert_allclose(loop_out, batched_out, rtol=1e-5, atol=1e-5)
    assert len(loop_grads) == 2 + len(layer.trainable_variables)
    for grad, ref, name in zip(loop_grads, batched_grads, ["inputs", "weight"] + [v.path for v in layer.trainable_variables]):
        assert np.abs(ref).max() > 0 or name == "weight", name  # every weight has a gradient to compare
        np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-4, err_msg=name)


def test_clamped_swiglu_clamps():
    act = activations.get("clamped_swiglu")
    gate, up = np.array([100.0, -100.0, 1.0], "float32"), np.array([100.0, 1.0, -100.0], "float32")
    out = to_numpy(act(gate, up))
    np.testing.assert_allclose(out, [(7 + 1) * 7 / (1 + np.exp(-1.702 * 7)), 0.0, (-7 + 1) / (1 + np.exp(-1.702))], atol=1e-5)


def test_gelu_tanh_is_the_tanh_approximation():
    x = np.linspace(-3, 3, 7).astype("float32")
    tanh = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(to_numpy(activations.get("gelu_tanh")(x)), tanh, rtol=1e-5, atol=1e-6)
    assert not np.allclose(to_numpy(activations.get("gelu")(x)), tanh, atol=1e-5)  # exact GELU differs


@pytest.mark.parametrize("spec, message", [
    ("tanh", "activation='tanh'"),
    ({"name": "clamped_swiglu", "beta": 1.0}, "beta"),
    ({"name": "clamped_swiglu", "limit": -1.0}, "limit"),
    ({"name": "swiglu", "limit": 7.0}, "takes no parameters"),
])
def test_bad_activations_name_the_value(spec, message):
    with pytest.raises(ValueError, match=message):
        ExpertBank(E, F, activation=spec)


@pytest.mark.parametrize("layer", [
    ExpertBank(3, 8, activation="gelu", use_bias=True, kernel_initializer="he_normal"),
    ExpertBank(3, 8, activation={"name": "clamped_swiglu", "limit": 5.0, "alpha": 1.5}, gate_up_layout="interleaved",
               use_bias=True, use_output_scale=True),
    FeedForward(8, activation="reglu", use_bias=True, kernel_initializer="he_normal"),
], ids=["expert_bank", "expert_bank_clamped", "feed_forward"])
def test_expert_layers_config_round_trip(layer):
    assert_config_complete(layer)


def test_parameter_counts_match_the_built_layers():
    for kwargs in CASES + [dict(activation="relu", use_bias=True)]:
        assert bank(**kwargs).count_params() == ExpertBank(E, F, **kwargs).parameter_count(H), kwargs
    ffn = FeedForward(F, activation="geglu", use_bias=True)
    ffn.build((None, H))
    assert ffn.count_params() == FeedForward(F, activation="geglu", use_bias=True).parameter_count(H) == H * 2 * F + 2 * F + F * H + H


class ExpertBankContractTest(TestCase):
    def test_layer_contract(self):
        self.run_layer_test(
            ExpertBank,
            init_kwargs={"num_experts": 3, "intermediate_dim": 4, "gate_up_layout": "separate", "use_bias": True},
            input_shape=(3, 5, 8),
            expected_output_shape=(3, 5, 8),
            expected_num_trainable_weights=6,  # gate, up, out kernels and their biases
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=0,
            expected_num_losses=0,
        )

