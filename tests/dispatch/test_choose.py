"""`dispatch="auto"`: the table of `keras_moe.dispatch.choose` and that the layer runs what it picks."""

import keras
import numpy as np
import pytest

import keras_moe
from keras_moe.dispatch import auto_mode, choose


@pytest.mark.parametrize(
    "tokens, experts, expected",
    [
        (1, 8, "gathered"),  # decoding: read the 2 chosen experts' weights, not all 8
        (8, 8, "gathered"),
        (51, 8, "gathered"),
        (52, 8, "all_experts"),  # too many choices to gather, few enough tokens for every expert
        (64, 8, "all_experts"),
        (256, 8, "blocked"),  # training-sized batches
        (4096, 8, "blocked"),
        (1, 64, "gathered"),  # many experts: read the 2 chosen ones, not all 64
        (16, 64, "gathered"),
        (64, 64, "blocked"),
        (None, 8, "dropless"),
    ],
)
def test_jax_and_xla_picks(tokens, experts, expected):
    assert auto_mode(tokens, 2, experts, backend="jax", platform="cpu") == expected
    assert auto_mode(tokens, 2, experts, backend="tensorflow", xla=True) == expected


@pytest.mark.parametrize("tokens, experts", [(2, 8), (8, 8), (64, 8), (256, 8), (4096, 8), (4, 64), (None, 8)])
def test_tensorflow_without_xla_splits_from_two_tokens(tokens, experts):
    """In the decoding loop the splits beat gathering from 2 tokens up, and computing every expert everywhere."""
    assert auto_mode(tokens, 2, experts, backend="tensorflow") == "dropless"


@pytest.mark.parametrize("experts", [8, 64])
def test_tensorflow_without_xla_gathers_for_one_token(experts):
    assert auto_mode(1, 2, experts, backend="tensorflow") == "gathered"


def test_tpu_and_other_backends_use_grouped_matmul():
    assert auto_mode(4096, 2, 8, backend="jax", platform="tpu") == "dropless"
    assert auto_mode(1, 2, 8, backend="torch") == "dropless"


def test_layer_runs_the_mode_auto_picks(monkeypatch):
    """The auto layer's outputs come from the picked mode's function, for a decode-sized and a training-sized batch."""
    from keras_moe.routing import token_choice

    picked = []
    real = dict(token_choice.DISPATCH_MODES)
    for mode in ("dropless", "blocked", "gathered", "all_experts"):
        monkeypatch.setitem(token_choice.DISPATCH_MODES, mode, lambda *a, _m=mode, **k: picked.append(_m) or real[_m](*a, **k))
    layer = keras_moe.MoELayer(8, 16, router={"class_name": "top_k", "config": {"top_k": 2}}, dispatch="auto")
    for tokens in (1, 300):
        x = np.random.default_rng(tokens).standard_normal((1, tokens, 8)).astype("float32")
        layer(x)
        backend = keras.backend.backend()
        platform = "cpu" if backend == "jax" else None
        expected = auto_mode(tokens, 2, 8, backend=backend, platform=platform)
        assert picked[-1] == expected, (tokens, picked)


def test_constants_are_the_documented_ones():
    """The docstring's table quotes these thresholds; a change must update both."""
    doc = choose.__doc__
    assert str(choose.FEW_ROWS) in doc and f"{choose.GATHER_COST} t k" in doc


def test_unknown_token_count_picks_the_one_token_mode_at_run_time(monkeypatch):
    """A SavedModel signature's batch is unknown while tracing: its decoding step (one token) must still
    take the one-token mode, chosen in the graph, and larger calls the general one; outputs stay exact."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("only TensorFlow traces with an unknown token count (JAX shapes are static)")
    import tensorflow as tf

    from keras_moe.routing import token_choice

    single, general = auto_mode(1, 2, 8), auto_mode(None, 2, 8)
    assert (single, general) == ("gathered", "dropless")
    real = dict(token_choice.DISPATCH_MODES)
    runs = {mode: tf.Variable(0) for mode in (single, general)}

    def counted(mode):
        def run(*args, **kwargs):
            runs[mode].assign_add(1)  # a stateful op: runs only if the graph takes this branch
            return real[mode](*args, **kwargs)

        return run

    for mode in runs:
        monkeypatch.setitem(token_choice.DISPATCH_MODES, mode, counted(mode))
    layer = keras_moe.MoELayer(8, 16, router={"class_name": "top_k", "config": {"top_k": 2}}, dispatch="auto")
    reference = keras_moe.MoELayer.from_config({**layer.get_config(), "dispatch": "dropless"})
    layer.build((None, None, 8))
    reference.build((None, None, 8))
    reference.set_weights(layer.get_weights())
    serve = tf.function(lambda x: layer(x), input_signature=[tf.TensorSpec([None, None, 8], tf.float32)])
    for shape, taken in (((1, 1, 8), single), ((3, 5, 8), general), ((1, 1, 8), single)):
        before = {mode: int(count.numpy()) for mode, count in runs.items()}
        x = np.random.default_rng(sum(shape)).standard_normal(shape).astype("float32")
        outputs = serve(x).numpy()
        after = {mode: int(count.numpy()) for mode, count in runs.items()}
        assert {mode: after[mode] - before[mode] for mode in runs} == {mode: int(mode == taken) for mode in runs}, shape
        np.testing.assert_allclose(outputs, keras.ops.convert_to_numpy(reference(x)), atol=1e-5)
    # Training graphs keep one path: the one-token choice is for decoding.
    train = tf.function(lambda x: layer(x, training=True), input_signature=[tf.TensorSpec([None, None, 8], tf.float32)])
    before = {mode: int(count.numpy()) for mode, count in runs.items()}
    train(np.ones((1, 1, 8), "float32"))
    assert {mode: int(runs[mode].numpy()) - before[mode] for mode in runs} == {single: 0, general: 1}
