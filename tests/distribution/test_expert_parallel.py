"""Expert parallelism on JAX (keras.distribution): 4 virtual CPU devices, expert banks split 4 ways."""

from tests.distribution.subprocesses import jax_only, run_job


@jax_only
def test_expert_sharded_model_matches_unsharded_and_splits_banks():
    result = run_job("expert_parallel", KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
                     XLA_FLAGS="--xla_force_host_platform_device_count=4")
    assert result["devices"] == 4
    for mesh, expert_axis in (("mesh_1x4", 4), ("mesh_2x2", 2)):
        run = result[mesh]
        assert run["output_diff"] < 1e-5 and run["loss_diff"] < 1e-5
        assert run["weight_diff_after_step"] < 1e-5  # one SGD step, same as unsharded
        for path, shapes in run["shard_shapes"].items():
            full = run["full_shapes"][path]
            assert shapes == [[full[0] // expert_axis] + full[1:]], (path, shapes)  # 1/expert_axis of the bank
            assert run["devices_per_bank"][path] == 4
