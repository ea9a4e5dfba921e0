"""Checkpoints move between strategies: mirrored -> default and default -> mirrored resume exactly."""

from tests.distribution.subprocesses import run_job, tensorflow_only


@tensorflow_only
def test_resume_across_strategies_equals_uninterrupted_single_device(tmp_path):
    result = run_job("checkpoints", tmp_path, KERAS_BACKEND="tensorflow")
    for name in ("mirrored_to_default", "default_to_mirrored"):
        run = result[name]
        assert run["load_diff"] == {"weights": 0.0, "optimizer": 0.0}  # identical weights and optimizer state
        assert run["step"] == 4  # 2 steps before the checkpoint, 2 after
        assert run["weight_diff_vs_4_single_steps"] < 1e-5
    assert (result["mirrored_to_default"]["replicas_before"], result["mirrored_to_default"]["replicas_after"]) == (2, 1)
