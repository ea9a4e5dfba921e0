"""MoELayer: oracle parity, masking, statistics, losses, Keras contracts, both dispatch modes."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_moe
from keras_moe import dispatch
from tests.conftest import random_tokens, to_numpy
from tests.contracts import assert_config_complete, assert_keras_round_trip, assert_saved_model_parity

TOKEN_ROUTERS = ["top_k", "switch", "sigmoid", "noisy_top_k", "dense"]


def oracle(layer, tokens, training=False):
    """Every expert on every token, combined with the router's weights: the slow reference."""
    result = layer.router(tokens, training=training)
    every = to_numpy(layer.experts.call_all(tokens))  # [t, e, h]
    index, weight = to_numpy(result.expert_index), to_numpy(result.expert_weight)
    chosen = np.take_along_axis(every, index[:, :, None], axis=1)  # [t, k, h]
    return np.einsum("tkh,tk->th", chosen, weight)


def make_layer(router, dispatch_mode, num_experts=4, **kwargs):
    kwargs.setdefault("train_capacity_factor", 8.0)  # nothing drops: oracle-comparable
    kwargs.setdefault("eval_capacity_factor", 8.0)
    layer = keras_moe.MoELayer(num_experts, 16, router=router, dispatch=dispatch_mode, **kwargs)
    layer.build((None, 8))
    return layer


@pytest.mark.parametrize("dispatch_mode", ["capacity", "dropless"])
@pytest.mark.parametrize("router", TOKEN_ROUTERS)
def test_sparse_path_equals_dense_oracle(router, dispatch_mode):
    layer = make_layer(router, dispatch_mode)
    tokens = random_tokens(12, 8)
    np.testing.assert_allclose(to_numpy(layer(tokens)), oracle(layer, tokens), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dispatch_mode", ["capacity", "dropless"])
def test_gradients_equal_dense_oracle(dispatch_mode):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient oracle written with tf.GradientTape")
    import tensorflow as tf

    layer = make_layer("top_k", dispatch_mode)
    tokens = tf.constant(random_tokens(10, 8))
    weights = [layer.experts.in_kernel, layer.experts.out_kernel, layer.router.kernel]

    def oracle_tf(x):
        result = layer.router(x)
        every = layer.experts.call_all(x)
        chosen = tf.gather(every, result.expert_index, batch_dims=1)
        return tf.einsum("tkh,tk->th", chosen, result.expert_weight)

    grads = []
    for fn in (lambda x: layer(x), oracle_tf):
        with tf.GradientTape() as tape:
            tape.watch(tokens)
            loss = tf.reduce_sum(fn(tokens) ** 2)
        grads.append(tape.gradient(loss, [tokens] + [w.value for w in weights]))
    for sparse, dense in zip(*grads):
        np.testing.assert_allclose(sparse.numpy(), dense.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dispatch_mode", ["capacity", "dropless"])
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
    layer = keras_moe.MoELayer(4, 16, top_k=2, train_capacity_factor=0.5, min_expert_capacity=1)
    tokens = random_tokens(16, 8)
    outputs = to_numpy(layer(tokens, training=True))
    capacity = layer.capacity(16, training=True)
    assert capacity == 4  # ceil(0.5 * 16 * 2 / 4)
    result = layer.router(tokens)
    index, weight = to_numpy(result.expert_index), to_numpy(result.expert_weight)
    _, kept = dispatch.capacity_slots(result.expert_index, 4, capacity)
    kept = to_numpy(kept)
    per_expert = np.bincount(index[kept], minlength=4)
    assert per_expert.max() <= capacity
    assert stats(layer)["dropped"] == pytest.approx(1.0 - kept.mean())
    assert kept.mean() < 1.0  # the test really drops something
    # Dropped choices contribute nothing: the oracle with their weights zeroed.
    every = to_numpy(layer.experts.call_all(tokens))
    chosen = np.take_along_axis(every, index[:, :, None], axis=1)
    np.testing.assert_allclose(outputs, np.einsum("tkh,tk->th", chosen, weight * kept), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dispatch_mode", ["capacity", "dropless"])
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
    result = layer.router(tokens, training=True)
    assert float(to_numpy(layer.losses[0])) == pytest.approx(float(sum(to_numpy(v) for v in result.aux_losses.values())), rel=1e-5)


def test_shared_experts_are_added_to_every_token():
    layer = keras_moe.MoELayer(4, 8, top_k=1, router="switch", num_shared_experts=2, eval_capacity_factor=8.0)
    tokens = random_tokens(5, 8)
    outputs = to_numpy(layer(tokens))
    assert layer.shared_experts.intermediate_dim == 16
    np.testing.assert_allclose(outputs - to_numpy(layer.shared_experts(tokens)), oracle(layer, tokens), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("router", ["expert_choice", "soft"])
def test_non_token_choice_routers_run_their_own_dispatch(router):
    layer = make_layer(router, "capacity")
    tokens = random_tokens(2, 5, 8)
    assert to_numpy(layer(tokens)).shape == (2, 5, 8)
    assert layer.experts_per_token == {"expert_choice": 2.0, "soft": 4.0}[router]


def test_config_round_trip_keeps_every_argument():
    layer = keras_moe.MoELayer(
        6, 12, top_k=3, router="top_k", activation="geglu", num_shared_experts=1, dispatch="dropless",
        train_capacity_factor=1.5, eval_capacity_factor=3.0, min_expert_capacity=2, use_bias=True,
        kernel_initializer="he_normal", name="moe_custom",
    )
    clone = assert_config_complete(layer)
    assert clone.router.top_k == 3 and clone.dispatch == "dropless" and clone.activation == "geglu"
    custom = keras_moe.MoELayer(4, 8, router=keras_moe.SigmoidRouter(4, top_k=2, bias_update_rate=0.01))
    assert assert_config_complete(custom).router.bias_update_rate == 0.01


@pytest.mark.parametrize("layer", [
    keras_moe.ExpertBank(3, 8, activation="gelu", use_bias=True, kernel_initializer="he_normal"),
    keras_moe.FeedForward(8, activation="reglu", use_bias=True, kernel_initializer="he_normal"),
], ids=["expert_bank", "feed_forward"])
def test_expert_layers_config_round_trip(layer):
    assert_config_complete(layer)


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
    result = model.get_layer("moe").router(np.reshape(tokens, (-1, 8)))
    load = np.bincount(to_numpy(result.expert_index).ravel(), minlength=4) / (8 * 6 * 2)
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
    result = layer.router(random_tokens(4, 8))
    assert keras.backend.standardize_dtype(result.router_probs.dtype) == "float32"
    history = model.fit(random_tokens(16, 6, 8), np.arange(16) % 3, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_experts=4, intermediate_dim=8, top_k=5), "top_k"),
    (dict(num_experts=0, intermediate_dim=8), "num_experts=0"),
    (dict(num_experts=4, intermediate_dim=-1), "intermediate_dim=-1"),
    (dict(num_experts=4, intermediate_dim=8, train_capacity_factor=0.0), "train_capacity_factor=0.0"),
    (dict(num_experts=4, intermediate_dim=8, eval_capacity_factor=-1), "eval_capacity_factor=-1"),
    (dict(num_experts=4, intermediate_dim=8, router="nope"), "nope"),
    (dict(num_experts=4, intermediate_dim=8, dispatch="sparse"), "dispatch='sparse'"),
    (dict(num_experts=4, intermediate_dim=8, activation="tanh"), "activation='tanh'"),
    (dict(num_experts=4, intermediate_dim=8, router=keras_moe.TopKRouter(6)), "num_experts"),
    (dict(num_experts=4, intermediate_dim=8, top_k=1, router=keras_moe.TopKRouter(4, top_k=2)), "top_k"),
    (dict(num_experts=4, intermediate_dim=8, top_k=2, router="switch"), "top_k=2"),
])
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        keras_moe.MoELayer(**kwargs)
