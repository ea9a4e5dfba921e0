"""`keras-moe launch --workers 2 -- train ...`: MultiWorkerMirroredStrategy on loopback equals one device."""

import json

import numpy as np

from tests.distribution.subprocesses import run_cli, tensorflow_only

TINY = ["recipe=shakespeare_moe", "trainer=smoke", "trainer.epochs=3", "trainer.steps_per_epoch=1", "optimizer=adam",
        "optimizer.learning_rate=0.01", "model.backbone.router.config.load_balancing_loss_weight=0.1",
        "model.backbone.num_layers=1", "model.backbone.hidden_dim=16", "model.backbone.num_heads=2",
        "model.backbone.num_kv_heads=1", "model.backbone.intermediate_dim=8", "data.sequence_length=16",
        "data.batch_size=4", "data.max_validation_windows=8", "export.enabled=false", "trainer.sample_length=4"]


def weights(path):
    import keras

    import keras_moe.models  # noqa: F401  (registers the classes)

    return keras.models.load_model(path).get_weights()


@tensorflow_only
def test_two_workers_on_loopback_match_one_device(tmp_path):
    code, output = run_cli("launch", "--workers", "2", "--timeout", "400", "--", "train", *TINY,
                           f"output_dir={tmp_path}/mwms", cwd=tmp_path, timeout=450)
    assert code == 0, output[-4000:]
    assert "[worker 0]" in output and "[worker 1]" in output
    code, output = run_cli("train", *TINY, f"output_dir={tmp_path}/single", cwd=tmp_path)
    assert code == 0, output[-4000:]

    single = json.loads((tmp_path / "single" / "metrics.json").read_text())["history"]
    chief = json.loads((tmp_path / "mwms" / "metrics.json").read_text())["history"]
    worker = json.loads((tmp_path / "mwms" / "worker_1" / "metrics.json").read_text())["history"]
    assert len(single["loss"]) == 3
    for key in single:  # per step: loss (with aux), aux losses, routing statistics, validation
        assert np.allclose(single[key], chief[key], atol=1e-5), (key, single[key], chief[key])
        assert np.allclose(chief[key], worker[key], atol=1e-6)
    reference = weights(tmp_path / "single" / "model.keras")
    for path in (tmp_path / "mwms" / "model.keras", tmp_path / "mwms" / "worker_1" / "model.keras"):
        assert max(float(np.max(np.abs(a - b))) for a, b in zip(reference, weights(path))) < 1e-5


@tensorflow_only
def test_launcher_stops_the_others_when_a_worker_fails(tmp_path):
    # An override every worker rejects after start-up: the launcher reports the failure and returns.
    code, output = run_cli("launch", "--workers", "2", "--timeout", "200", "--", "train", *TINY,
                           "data.batch_size=3", f"output_dir={tmp_path}/bad", cwd=tmp_path, timeout=250)
    assert code != 0
    assert "batch_size=3" in output and "replicas=2" in output
