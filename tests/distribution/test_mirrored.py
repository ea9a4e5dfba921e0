"""MirroredStrategy on 2 logical CPUs equals one device: losses, routing statistics, aux losses, weights."""

from tests.distribution.subprocesses import run_job, tensorflow_only

TOLERANCE = 1e-5


@tensorflow_only
def test_two_replicas_match_one_device():
    result = run_job("mirrored_parity", KERAS_BACKEND="tensorflow")
    assert result["replicas"] == 2
    # 3 steps of the tiny MoE LM (2 MoE layers, load-balancing weight 0.1, z-loss 0.01, padded batches).
    assert result["weight_diff"] < TOLERANCE
    for key, diff in result["log_diff"].items():  # loss (CE + aux), every aux loss and routing statistic
        assert diff < TOLERANCE, (key, diff)
    assert any(key.endswith("load_balancing_loss") for key in result["log_diff"])
    # The test can fail: with per-replica (local) routing statistics the aux gradients differ.
    assert result["local_stats_weight_diff"] > 3 * TOLERANCE


@tensorflow_only
def test_sigmoid_router_bias_updates_match_one_device():
    result = run_job("mirrored_sigmoid", KERAS_BACKEND="tensorflow")
    assert result["bias_moved"] > 0  # the bias update ran
    assert result["weight_diff"] < TOLERANCE  # incl. the bias, moved from the global load
    assert max(result["log_diff"].values()) < TOLERANCE
