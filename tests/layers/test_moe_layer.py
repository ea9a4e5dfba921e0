"""MoELayer: oracle parity for every routing family, masking, statistics, losses, features, Keras contracts."""

import keras
import numpy as np
import pytest
from keras.src.testing import TestCase

import keras_moe
from keras_moe import dispatch
from tests.conftest import random_tokens, to_numpy
from tests.contracts import assert_config_complete, assert_keras_round_trip, assert_saved_model_parity

TOKEN_ROUTERS = ["top_k", "switch", "sigmoid", "noisy_top_k", "dense"]


def oracle(layer, tokens, training=False, router_tokens=None):
    """Every expert on every token, combined with the router's weights: the slow reference."""
    routing = layer.router(tokens if router_tokens is None else router_tokens, training=training)
    every = to_numpy(layer.experts.call_all(tokens))  # [t, e, h]
    index, weight = to_numpy(routing.expert_index), to_numpy(routing.expert_weight)
    chosen = np.take_along_axis(every, index[:, :, None], axis=1)  # [t, k, h]
    return np.einsum("tkh,tk->th", chosen, weight)


def make_layer(router, dispatch_mode="capacity", num_experts=4, hidden=8, **kwargs):
    kwargs.setdefault("train_capacity_factor", 8.0)  # nothing drops: oracle-comparable
    kwargs.setdefault("eval_capacity_factor", 8.0)
    layer = keras_moe.MoELayer(num_experts, 16, router=router, dispatch=dispatch_mode, **kwargs)
    layer.build((None, hidden))
    return layer


EXACT_MODES = ["dropless", "blocked", "gathered", "all_experts", "auto"]


@pytest.mark.parametrize("dispatch_mode", ["capacity"] + EXACT_MODES)
@pytest.mark.parametrize("router", TOKEN_ROUTERS)
def test_sparse_path_equals_dense_oracle(router, dispatch_mode):
    layer = make_layer(router, dispatch_mode)
    tokens = random_tokens(12, 8)
    np.testing.assert_allclose(to_numpy(layer(tokens)), oracle(layer, tokens), rtol=1e-5, atol=1e-6)


def test_blocked_skips_unused_blocks_only_at_inference(monkeypatch):
    """Skipping padding blocks (a `cond` per chunk) speeds inference but slows a backward pass."""
    from keras_moe.dispatch import blocked

    calls = []
    real = blocked.run_used_blocks
    monkeypatch.setattr(blocked, "run_used_blocks", lambda *args: calls.append(1) or real(*args))
    layer = make_layer("top_k", "blocked")
    tokens = random_tokens(12, 8)
    trained = to_numpy(layer(tokens, training=True))
    assert calls == []
    np.testing.assert_allclose(to_numpy(layer(tokens, training=False)), trained, rtol=1e-5, atol=1e-6)
    assert calls == [1]


def test_expert_choice_dispatch_equals_its_oracle():
    """Expert `e` adds `S[t, e] * expert_e(x_t)` to each token it picked (its top `c` of `S[:, e]`)."""
    layer = make_layer({"class_name": "expert_choice", "config": {"capacity_factor": 1.0}})
    tokens = random_tokens(8, 8)
    probs = to_numpy(layer.router(tokens).router_probs)  # [t, e]
    every = to_numpy(layer.experts.call_all(tokens))  # [t, e, h]
    capacity = 2  # ceil(8 * 1.0 / 4)
    expected = np.zeros((8, 8))
    for e in range(4):
        for t in np.argsort(-probs[:, e], kind="stable")[:capacity]:
            expected[t] += probs[t, e] * every[t, e]
    np.testing.assert_allclose(to_numpy(layer(tokens)), expected, rtol=1e-5, atol=1e-6)


def test_soft_dispatch_equals_its_oracle():
    """Slots mix the sequence (softmax over tokens), experts run per slot, tokens mix slots (softmax over slots)."""
    layer = make_layer({"class_name": "soft", "config": {"num_slots": 2}})
    tokens = random_tokens(2, 5, 8)
    logits = to_numpy(layer.router.compute_logits(tokens))  # [b, s, e p]
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    dispatch_w = z / z.sum(axis=1, keepdims=True)
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    combine_w = z / z.sum(axis=-1, keepdims=True)
    slots = np.einsum("bsn,bsh->bnh", dispatch_w, tokens)  # [b, 8, h]; slot n belongs to expert n // 2
    kernels = {name: to_numpy(layer.experts.expert_kernel(name)) for name in ("in", "out")}
    outputs = np.zeros_like(slots)
    for n in range(8):
        hidden = slots[:, n] @ kernels["in"][n // 2]
        gate, up = np.split(hidden, 2, axis=-1)
        outputs[:, n] = (gate / (1 + np.exp(-gate)) * up) @ kernels["out"][n // 2]
    expected = np.einsum("bsn,bnh->bsh", combine_w, outputs)
    np.testing.assert_allclose(to_numpy(layer(tokens)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dispatch_mode", ["capacity", "dropless"])
def test_gradients_equal_dense_oracle(dispatch_mode):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient oracle written with tf.GradientTape")
    import tensorflow as tf

    layer = make_layer("top_k", dispatch_mode)
    tokens = tf.constant(random_tokens(10, 8))
    weights = [layer.experts.in_kernel, layer.experts.out_kernel, layer.router.kernel]

    def oracle_tf(x):
        routing = layer.router(x)
        every = layer.experts.call_all(x)
        chosen = tf.gather(every, routing.expert_index, batch_dims=1)
        return tf.einsum("tkh,tk->th", chosen, routing.expert_weight)

    grads = []
    for fn in (lambda x: layer(x), oracle_tf):
        with tf.GradientTape() as tape:
            tape.watch(tokens)
            loss = tf.reduce_sum(fn(tokens) ** 2)
        grads.append(tape.gradient(loss, [tokens] + [w.value for w in weights]))
    for sparse, dense in zip(*grads):
        np.testing.assert_allclose(sparse.numpy(), dense.numpy(), rtol=1e-4, atol=1e-6)


def gradients(layer, tokens):
    """d(sum of squared outputs) / d(tokens, expert kernels, router kernel), on either backend."""
    names = ["in_kernel", "out_kernel"]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tokens = tf.constant(tokens)
        watched = [layer.experts.in_kernel, layer.experts.out_kernel, layer.router.kernel]
        with tf.GradientTape() as tape:
            tape.watch(tokens)
            loss = tf.reduce_sum(layer(tokens) ** 2)
        return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, [tokens] + [w.value for w in watched])]
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    order = [[v.path for v in layer.trainable_variables].index(w.path)
             for w in (layer.experts.in_kernel, layer.experts.out_kernel, layer.router.kernel)]
    assert names  # the experts' kernels and the router's are all trainable

    def loss(x, weights):
        out, _ = layer.stateless_call(weights, [v.value for v in layer.non_trainable_variables], x)
        return (out ** 2).sum()

    dx, dw = jax.grad(loss, argnums=(0, 1))(tokens, trainable)
    return [np.asarray(dx)] + [np.asarray(dw[i]) for i in order]


@pytest.mark.parametrize("dispatch_mode", EXACT_MODES[1:])
def test_every_exact_path_has_the_reference_gradients(dispatch_mode):
    reference = make_layer("top_k", "dropless")
    layer = make_layer("top_k", dispatch_mode)
    layer.set_weights(reference.get_weights())
    tokens = random_tokens(10, 8)
    np.testing.assert_allclose(to_numpy(layer(tokens)), to_numpy(reference(tokens)), rtol=1e-5, atol=1e-6)
    for ours, expected in zip(gradients(layer, tokens), gradients(reference, tokens)):
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dispatch_mode", ["capacity"] + EXACT_MODES)
def test_token_output_independent_of_batch_and_permutation(dispatch_mode):
    layer = make_layer("top_k", dispatch_mode)
    tokens = random_tokens(9, 8)
    together = to_numpy(layer(tokens))
    alone = np.concatenate([to_numpy(layer(tokens[i : i + 1])) for i in range(9)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    perm = np.random.default_rng(0).permutation(9)
    np.testing.assert_allclose(to_numpy(layer(tokens[perm])), together[perm], rtol=1e-5, atol=1e-6)


def stats(layer):
    return {k.removeprefix(layer.name + "_"): float(v) for k, v in layer.routing_stats.result().items()}


def test_capacity_drops_are_reported_exactly():
    layer = keras_moe.MoELayer(4, 16, train_capacity_factor=0.5, min_expert_capacity=1)
    tokens = random_tokens(16, 8)
    outputs = to_numpy(layer(tokens, training=True))
    options = layer.dispatch_options(training=True)
    capacity = dispatch.expert_capacity(16, 4, layer.router.top_k, options.capacity_factor, options.min_expert_capacity)
    assert capacity == 4  # ceil(0.5 * 16 * 2 / 4)
    routing = layer.router(tokens)
    index, weight = to_numpy(routing.expert_index), to_numpy(routing.expert_weight)
    _, kept = dispatch.capacity_slots(routing.expert_index, 4, capacity)
    kept = to_numpy(kept)
    assert np.bincount(index[kept], minlength=4).max() <= capacity
    assert stats(layer)["dropped"] == pytest.approx(1.0 - kept.mean())
    assert kept.mean() < 1.0  # the test really drops something
    # Dropped choices contribute nothing: the oracle with their weights zeroed.
    every = to_numpy(layer.experts.call_all(tokens))
    chosen = np.take_along_axis(every, index[:, :, None], axis=1)
    np.testing.assert_allclose(outputs, np.einsum("tkh,tk->th", chosen, weight * kept), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dispatch_mode", ["capacity"] + EXACT_MODES)
@pytest.mark.parametrize("router", ["top_k", "expert_choice", "soft"])
def test_padding_takes_no_capacity_and_no_statistic(router, dispatch_mode):
    layer = make_layer(router, dispatch_mode)
    tokens = random_tokens(2, 6, 8)
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]], bool)
    outputs = to_numpy(layer(tokens, mask=mask))
    if router != "soft":  # Soft MoE gives padding the mixture of slots, which carry no padding
        np.testing.assert_allclose(outputs[~mask], 0.0, atol=1e-7)
    # Real tokens do not see the padding: replacing padded values changes nothing.
    noisy = np.where(mask[:, :, None], tokens, 100.0).astype("float32")
    np.testing.assert_allclose(to_numpy(layer(noisy, mask=mask))[mask], outputs[mask], rtol=1e-5, atol=1e-6)
    counts = to_numpy(layer.routing_stats.expert_counts)
    per_call = {"top_k": 2 * mask.sum(), "expert_choice": None, "soft": mask.sum()}[router]
    if per_call is not None:
        assert counts.sum() == pytest.approx(2 * per_call)  # two calls recorded
    assert float(to_numpy(layer.routing_stats.tokens)) == 2 * mask.sum()


def test_aux_losses_only_when_training():
    layer = make_layer("top_k", "capacity")
    tokens = random_tokens(8, 8)
    layer(tokens, training=False)
    assert layer.losses == []
    layer(tokens, training=True)
    assert len(layer.losses) == 1
    routing = layer.router(tokens, training=True)
    expected = sum(float(to_numpy(v)) for v in routing.aux_losses.values())
    assert float(to_numpy(layer.losses[0])) == pytest.approx(expected, rel=1e-5)


def test_return_routing_gives_the_routing_the_layer_used():
    layer = make_layer("top_k", "dropless")
    tokens = random_tokens(2, 3, 8)
    outputs, routing = layer(tokens, return_routing=True)
    np.testing.assert_array_equal(to_numpy(outputs), to_numpy(layer(tokens)))
    expected = layer.router(np.reshape(tokens, (6, 8)))
    np.testing.assert_array_equal(to_numpy(routing.expert_index), to_numpy(expected.expert_index))
    np.testing.assert_allclose(to_numpy(routing.expert_weight), to_numpy(expected.expert_weight), rtol=1e-6)


def test_record_stats_off_writes_no_statistic():
    layer = make_layer("top_k", "capacity")
    tokens = random_tokens(6, 8)
    layer.record_stats = False
    layer(tokens)
    assert float(to_numpy(layer.routing_stats.batches)) == 0.0
    model = keras.Sequential([keras.Input((8,)), layer])
    layer.record_stats = True
    with keras_moe.layers.routing_statistics(model, enabled=False):
        layer(tokens)
        assert layer.record_stats is False
    assert layer.record_stats is True
    assert float(to_numpy(layer.routing_stats.batches)) == 0.0
    layer(tokens)
    assert float(to_numpy(layer.routing_stats.batches)) == 1.0


def test_shared_experts_are_added_to_every_token():
    layer = keras_moe.MoELayer(4, 8, router="switch", num_shared_experts=2, shared_intermediate_dim=6, eval_capacity_factor=8.0)
    tokens = random_tokens(5, 8)
    outputs = to_numpy(layer(tokens))
    assert layer.shared_experts.intermediate_dim == 12
    np.testing.assert_allclose(outputs - to_numpy(layer.shared_experts(tokens)), oracle(layer, tokens), rtol=1e-5, atol=1e-6)


def test_gated_shared_expert_is_scaled_by_a_sigmoid_of_the_token():
    layer = make_layer("top_k", num_shared_experts=1, shared_intermediate_dim=24, shared_expert_gate=True)
    tokens = random_tokens(5, 8)
    gate = 1.0 / (1.0 + np.exp(-(tokens @ to_numpy(layer.shared_gate.kernel))))  # [t, 1]
    expected = oracle(layer, tokens) + gate * to_numpy(layer.shared_experts(tokens))
    np.testing.assert_allclose(to_numpy(layer(tokens)), expected, rtol=1e-5, atol=1e-6)
    assert layer.parameter_count(8)["total"] == layer.count_params()


def test_router_inputs_choose_the_experts_of_other_inputs():
    layer = make_layer("top_k", "dropless")
    tokens, router_tokens = random_tokens(6, 8, seed=1), random_tokens(6, 8, seed=2)
    outputs = to_numpy(layer(tokens, router_inputs=router_tokens))
    np.testing.assert_allclose(outputs, oracle(layer, tokens, router_tokens=router_tokens), rtol=1e-5, atol=1e-6)
    assert not np.allclose(outputs, to_numpy(layer(tokens)), atol=1e-4)


@pytest.mark.parametrize("dispatch_mode", ["capacity", "dropless"])
def test_expert_output_scale_multiplies_each_experts_output(dispatch_mode):
    layer = make_layer("top_k", dispatch_mode, use_output_scale=True, use_bias=True)
    layer.experts.output_scale.assign(np.array([0.5, 2.0, -1.0, 3.0], "float32"))
    tokens = random_tokens(10, 8)
    np.testing.assert_allclose(to_numpy(layer(tokens)), oracle(layer, tokens), rtol=1e-5, atol=1e-5)
    unscaled = to_numpy(layer.experts.call_all(tokens)) / np.array([0.5, 2.0, -1.0, 3.0])[None, :, None]
    layer.experts.output_scale.assign(np.ones(4, "float32"))
    np.testing.assert_allclose(to_numpy(layer.experts.call_all(tokens)), unscaled, rtol=1e-5, atol=1e-5)


def test_routing_families_report_their_own_decisions():
    tokens = random_tokens(2, 4, 8)
    for router, k in (("top_k", 2), ("expert_choice", 1), ("soft", 1)):
        _, routing = make_layer(router)(tokens, return_routing=True)
        ids, weights = routing.decisions()
        assert tuple(ids.shape) == (8, k) and tuple(weights.shape) == (8, k), router
    assert make_layer("expert_choice").experts_per_token == 2.0
    assert make_layer("soft").experts_per_token == 4.0


def test_parameter_count_matches_the_built_layer():
    for kwargs in (dict(router="noisy_top_k"), dict(router="sigmoid", num_shared_experts=2, use_bias=True),
                   dict(router={"class_name": "soft", "config": {"num_slots": 3}}, activation="gelu")):
        layer = make_layer(dispatch_mode="capacity", **kwargs)
        counts = keras_moe.MoELayer(4, 16, **kwargs).parameter_count(8)
        assert counts["total"] == layer.count_params(), kwargs
    # Hand arithmetic: 4 SwiGLU experts of 8 x 32 + 16 x 8 weights, 2 of 4 active, an 8 x 4 router.
    assert keras_moe.MoELayer(4, 16).parameter_count(8) == {"total": 4 * 384 + 32, "active": 2 * 384 + 32}


def test_config_round_trip_keeps_every_argument():
    layer = keras_moe.MoELayer(
        6, 12, router={"class_name": "top_k", "config": {"top_k": 3}}, activation="geglu", gate_up_layout="separate",
        num_shared_experts=1, shared_intermediate_dim=5, shared_expert_gate=True, dispatch="dropless",
        train_capacity_factor=1.5, eval_capacity_factor=3.0, min_expert_capacity=2, use_bias=True, use_output_scale=True,
        kernel_initializer="he_normal", record_stats=False, name="moe_custom",
    )
    clone = assert_config_complete(layer)
    assert clone.router.top_k == 3 and clone.dispatch == "dropless" and clone.activation == "geglu"
    assert clone.experts.gate_up_layout == "separate" and clone.shared_expert_gate and not clone.record_stats
    custom = keras_moe.MoELayer(4, 8, router=keras_moe.SigmoidRouter(4, top_k=2, bias_update_rate=0.01))
    assert assert_config_complete(custom).router.bias_update_rate == 0.01


def tiny_model(router="top_k", dispatch_mode="capacity", **kwargs):
    inputs = keras.Input((6, 8))
    hidden = keras_moe.MoELayer(4, 16, router=router, dispatch=dispatch_mode, name="moe", **kwargs)(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(hidden))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("router", ["top_k", "noisy_top_k", "switch", "expert_choice", "soft", "sigmoid", "dense"])
def test_keras_save_load_reproduces_outputs(router):
    model = tiny_model(router)
    assert_keras_round_trip(model, random_tokens(4, 6, 8))


@pytest.mark.parametrize("dispatch_mode", ["capacity", "dropless"])
def test_saved_model_export_parity(dispatch_mode):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("SavedModel export needs the TensorFlow backend")
    assert_saved_model_parity(tiny_model("top_k", dispatch_mode), random_tokens(4, 6, 8))


def compiled(model, jit_compile=False):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("dispatch_mode", ["capacity", "dropless"])
def test_fit_evaluate_predict_report_routing_metrics(dispatch_mode):
    model = compiled(tiny_model("top_k", dispatch_mode))
    x, y = random_tokens(16, 6, 8), np.arange(16) % 3
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y))
    for key in ("moe_load_max", "moe_load_min", "moe_dropped", "moe_entropy", "moe_load_balancing_loss", "val_moe_load_max"):
        assert key in history.history
    assert np.isfinite(history.history["loss"]).all()
    if keras.backend.backend() == "tensorflow":
        assert 0.25 <= history.history["moe_load_max"][-1] <= 1.0
        assert history.history["moe_load_balancing_loss"][-1] > 0
    evaluation = model.evaluate(x, y, verbose=0, return_dict=True)
    assert "moe_entropy" in evaluation
    assert model.predict(x, verbose=0).shape == (16, 3)


def test_training_updates_sigmoid_bias_not_by_gradient():
    model = compiled(tiny_model("sigmoid"))
    bias = model.get_layer("moe").router.expert_bias
    assert not bias.trainable
    tokens = random_tokens(8, 6, 8)
    routing = model.get_layer("moe").router(np.reshape(tokens, (-1, 8)))
    load = np.bincount(to_numpy(routing.expert_index).ravel(), minlength=4) / (8 * 6 * 2)
    model.train_on_batch(tokens, np.arange(8) % 3)  # one step: the bias moves by rate * sign(1/e - load)
    np.testing.assert_allclose(to_numpy(bias), 1e-3 * np.sign(0.25 - load), atol=1e-7)


def test_jit_compile_fit_in_capacity_mode():
    model = compiled(tiny_model("top_k", "capacity"), jit_compile=True)
    history = model.fit(random_tokens(16, 6, 8), np.arange(16) % 3, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("dispatch_mode", ["capacity", "dropless"])
def test_mixed_bfloat16_trains_without_nan(dispatch_mode):
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = compiled(tiny_model("top_k", dispatch_mode))
    layer = model.get_layer("moe")
    assert layer.compute_dtype == "bfloat16" and layer.router.compute_dtype == "float32"
    routing = layer.router(random_tokens(4, 8))
    assert keras.backend.standardize_dtype(routing.router_probs.dtype) == "float32"
    history = model.fit(random_tokens(16, 6, 8), np.arange(16) % 3, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_experts=4, intermediate_dim=8, router={"class_name": "top_k", "config": {"top_k": 5}}), "top_k"),
    (dict(num_experts=0, intermediate_dim=8), "num_experts=0"),
    (dict(num_experts=4, intermediate_dim=-1), "intermediate_dim=-1"),
    (dict(num_experts=4, intermediate_dim=8, train_capacity_factor=0.0), "train_capacity_factor=0.0"),
    (dict(num_experts=4, intermediate_dim=8, eval_capacity_factor=-1), "eval_capacity_factor=-1"),
    (dict(num_experts=4, intermediate_dim=8, router="nope"), "nope"),
    (dict(num_experts=4, intermediate_dim=8, dispatch="sparse"), "dispatch='sparse'"),
    (dict(num_experts=4, intermediate_dim=8, activation="tanh"), "activation='tanh'"),
    (dict(num_experts=4, intermediate_dim=8, router=keras_moe.TopKRouter(6)), "num_experts"),
    (dict(num_experts=4, intermediate_dim=8, top_k=1), "belongs to the router"),
    (dict(num_experts=4, intermediate_dim=8, shared_expert_gate=True), "num_shared_experts"),
    (dict(num_experts=4, intermediate_dim=8, shared_intermediate_dim=0), "shared_intermediate_dim=0"),
    (dict(num_experts=4, intermediate_dim=8, gate_up_layout="mixed"), "gate_up_layout='mixed'"),
    (dict(num_experts=4, intermediate_dim=8, activation="relu", gate_up_layout="separate"), "gated activation"),
    (dict(num_experts=4, intermediate_dim=8, record_stats=1), "record_stats=1"),
])
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        keras_moe.MoELayer(**kwargs)


class MoELayerContractTest(TestCase):
    """Keras's own layer contract (`run_layer_test`): build, symbolic and eager calls, weight, loss and
    seed-generator counts, serialisation, a training step and mixed precision."""

    def test_layer_contract(self):
        self.run_layer_test(
            keras_moe.MoELayer,
            init_kwargs={"num_experts": 4, "intermediate_dim": 8, "router": {"class_name": "top_k", "config": {"jitter_noise": 0.1}}},
            input_shape=(2, 3, 8),
            call_kwargs={"training": True},
            expected_output_shape=(2, 3, 8),
            expected_num_trainable_weights=3,  # router kernel, expert in and out kernels
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,  # the router's jitter
            expected_num_losses=1,  # the router's auxiliary losses, summed
            supports_masking=True,
        )

    def test_sigmoid_router_layer_contract(self):
        self.run_layer_test(
            keras_moe.MoELayer,
            init_kwargs={"num_experts": 4, "intermediate_dim": 8, "router": "sigmoid", "num_shared_experts": 1,
                         "shared_expert_gate": True},
            input_shape=(2, 3, 8),
            expected_output_shape=(2, 3, 8),
            expected_num_trainable_weights=6,  # router, experts (2), shared expert (2), shared gate
            expected_num_non_trainable_weights=1,  # the sigmoid router's expert bias
            expected_num_seed_generators=1,
            supports_masking=True,
        )
