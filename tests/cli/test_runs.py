"""Run identity and the run folder: names, sweeps, refusing another run's folder, finished and
half-finished runs, config values checked before anything is built, unreadable backups."""

import json
import os
import re
import shutil

import keras
import pytest
import yaml

from keras_moe.training import BackupError, ConfigError, RunConflict, compose_config, train
from keras_moe.training import run as run_module
from tests.cli.runs import run_command, tiny_run

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel export needs TensorFlow")


@pytest.fixture
def nothing_built(monkeypatch):
    """Fails the test if the run builds its data or model (checks must come first)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the run built its data or model")

    monkeypatch.setattr(run_module, "build_data", refuse)
    monkeypatch.setattr(run_module, "build_model", refuse)


def overrides(corpus, tmp_path, *extra):
    return tiny_run(corpus, f"output_root={tmp_path}/outputs", f"export.root={tmp_path}/saved", *extra)


def test_run_name_comes_from_the_recipe_and_the_overrides_that_change_the_training():
    assert compose_config([]).name == "shakespeare_moe"
    assert compose_config(["recipe=router_switch"]).name == "router_switch"
    switch = compose_config(["model/router=switch"]).name
    assert re.fullmatch(r"shakespeare_moe-[0-9a-f]{8}", switch)
    assert compose_config(["model/router=sigmoid"]).name != switch
    assert compose_config(["trainer.epochs=3", "model/router=switch"]).name not in (switch, "shakespeare_moe")
    # the same overrides in another order, plus run mechanics, name the same run
    mechanics = ["trainer.verbose=0", "strategy=mirrored", "export.root=elsewhere", "output_root=runs", "trainer.resume=false"]
    assert compose_config([*mechanics, "model/router=switch"]).name == switch
    assert compose_config(["name=mine", "model/router=switch"]).name == "mine"
    assert compose_config(["model/router=switch", "output_root=runs"]).output_dir == f"runs/{switch}"


def test_a_users_config_folder_adds_recipes(tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mine.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 7\n")
    monkeypatch.setenv("KERAS_MOE_CONFIG_DIR", str(tmp_path))
    cfg = compose_config(["recipe=mine"])
    assert (cfg.name, cfg.trainer.epochs) == ("mine", 7)
    monkeypatch.setenv("KERAS_MOE_CONFIG_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="KERAS_MOE_CONFIG_DIR=.*missing"):
        compose_config([])


@tensorflow_only  # the sweep's folders and names do not depend on the backend; each job exports on TensorFlow
def test_a_sweep_gives_every_job_its_own_folder_and_export(tmp_path, corpus):
    """`keras-moe train -m` as the README runs it, with no output folder of its own."""
    tiny = tiny_run(corpus)
    result = run_command("train", "-m", "model/router=top_k,switch", *tiny, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    names = {router: compose_config([f"model/router={router}", *tiny]).name for router in ("top_k", "switch")}
    assert len(set(names.values())) == 2
    for router, name in names.items():
        saved = yaml.safe_load((tmp_path / "outputs" / name / "config.yaml").read_text())
        assert saved["model"]["backbone"]["router"]["class_name"] == router
        assert json.loads((tmp_path / "outputs" / name / "metrics.json").read_text())["name"] == name
        assert os.listdir(tmp_path / "saved_models" / name) == ["1"]
        asset = yaml.safe_load((tmp_path / "saved_models" / name / "1" / "assets" / "keras_moe_config.yaml").read_text())
        assert asset["model"]["backbone"]["router"]["class_name"] == router


@pytest.fixture
def trained(tmp_path, corpus):
    """A finished tiny run named `clash` (without export, for speed)."""
    config = overrides(corpus, tmp_path, "name=clash", "export.enabled=false")
    metrics = train(compose_config(config))
    return config, metrics, tmp_path / "outputs" / "clash"


def test_a_different_configuration_under_a_runs_name_stops_before_training(trained, nothing_built, monkeypatch):
    config, _, folder = trained
    before = {name: (folder / name).read_bytes() for name in ("config.yaml", "model.keras", "metrics.json")}
    with pytest.raises(RunConflict) as error:
        train(compose_config([*config, "model.backbone.num_experts=8", "seed=3"]))
    message = str(error.value)
    assert "holds the run 'clash' with a different configuration" in message
    assert "model.backbone.num_experts: 4 -> 8" in message and "seed: 0 -> 3" in message
    assert "name=..." in message and "trainer.resume=false" in message
    assert {name: (folder / name).read_bytes() for name in before} == before  # nothing was touched
    monkeypatch.undo()  # building is allowed again: resume=false starts the run over
    metrics = train(compose_config([*config, "model.backbone.num_experts=8", "trainer.resume=false"]))
    assert metrics["parameters"]["total"] > trained[1]["parameters"]["total"]
    assert yaml.safe_load((folder / "config.yaml").read_text())["model"]["backbone"]["num_experts"] == 8


def test_a_rerun_of_a_finished_run_changes_nothing(trained, nothing_built):
    config, metrics, folder = trained
    before = {name: (folder / name).read_bytes() for name in ("config.yaml", "model.keras", "metrics.json")}
    rerun = train(compose_config([*config, "trainer.verbose=1"]))  # a run mechanic may differ
    assert json.dumps(rerun, sort_keys=True) == json.dumps(metrics, sort_keys=True)  # (NaN routing figures on JAX)
    assert {name: (folder / name).read_bytes() for name in before} == before


@tensorflow_only
def test_a_trained_run_without_its_export_only_exports_once(trained, nothing_built):
    config, _, folder = trained
    saved = folder.parent.parent / "saved" / "clash"
    (saved / ".1-left-by-a-kill").mkdir(parents=True)
    exporting = [o for o in config if o != "export.enabled=false"]
    metrics = train(compose_config(exporting))
    assert metrics["saved_model"] == str(saved / "1") and metrics["export"] == {"version": 1}
    assert sorted(os.listdir(saved)) == ["1"]  # the stale staging folder is gone
    assert yaml.safe_load((saved / "1" / "assets" / "keras_moe_config.yaml").read_text())["name"] == "clash"
    # killed after the rename, before metrics.json said so: the recorded version is taken, not a new one
    recorded = json.loads((folder / "metrics.json").read_text())
    del recorded["saved_model"]
    (folder / "metrics.json").write_text(json.dumps(recorded))
    assert train(compose_config(exporting))["saved_model"] == str(saved / "1")
    assert sorted(os.listdir(saved)) == ["1"]


@pytest.mark.parametrize("override, message", [
    ("name=../x", "name='../x'"),
    ("name=.hidden", "name='.hidden'"),
    ("recipe=../conf/config", "recipe='../conf/config'"),
    ("recipe=router_top_k,../x", "recipe='../x'"),
    ("trainer.backup_freq=-5", "trainer.backup_freq=-5"),
    ("trainer.backup_freq=abc", "trainer.backup_freq='abc'"),
    ("trainer.backup_freq=0", "trainer.backup_freq=0"),
    ("trainer.epochs=abc", "trainer.epochs='abc'"),
    ("trainer.steps_per_epoch=0", "trainer.steps_per_epoch=0"),
    ("seed=abc", "seed='abc'"),
    ("trainer.resume=maybe", "trainer.resume='maybe'"),
    ("trainer.verbose=3", "trainer.verbose=3"),
    ("trainer.max_minutes=0", "trainer.max_minutes=0"),
    ("trainer.max_minutes=soon", "trainer.max_minutes='soon'"),
    ("trainer.jit_compile=xla", "trainer.jit_compile='xla'"),
])
def test_bad_run_settings_fail_before_data_or_model_naming_the_key(override, message, tmp_path, corpus, nothing_built):
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(compose_config(overrides(corpus, tmp_path, override)))
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "outputs" / ".hidden")


def test_a_time_budget_ends_training_cleanly(tmp_path, corpus):
    """`trainer.max_minutes`: the step that spends it is the last; validation, model, metrics and history follow."""
    cfg = compose_config(overrides(corpus, tmp_path, "trainer.epochs=3", "trainer.steps_per_epoch=4", "trainer.max_minutes=0.00001",
                                   "export.enabled=false"))
    metrics = train(cfg)
    assert metrics["stopped_by_time_budget"] and metrics["steps_run"] == 1 and metrics["epochs_run"] == 1
    assert "val_loss" in metrics["history"]
    folder = tmp_path / "outputs" / cfg.name
    assert (folder / "model.keras").is_file() and (folder / "history.csv").is_file()
    unlimited = train(compose_config(overrides(corpus, tmp_path, "trainer.epochs=1", "trainer.steps_per_epoch=2",
                                               "export.enabled=false")))
    assert not unlimited["stopped_by_time_budget"] and unlimited["steps_run"] == 2


def test_a_path_as_run_name_creates_nothing_outside_the_outputs(tmp_path):
    result = run_command("train", "name=../escaped", cwd=tmp_path)
    assert result.returncode != 0
    assert "Invalid `name`" in result.stderr and "name='../escaped'" in result.stderr
    assert sorted(os.listdir(tmp_path)) == []


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, corpus):
    """A tiny run stopped at step 3 of 4, with its backup at step 3."""
    class StopAfter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0 and self.params["steps"] == 2 and getattr(self, "epoch", 0) == 1:
                raise KeyboardInterrupt("simulated interruption")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    root = tmp_path_factory.mktemp("interrupted")
    config = tiny_run(corpus, f"output_root={root}", "name=stopped", "export.enabled=false", "trainer.epochs=2",
                      "trainer.steps_per_epoch=2", "trainer.backup_freq=1")
    with pytest.raises(KeyboardInterrupt):
        train(compose_config(config), extra_callbacks=[StopAfter()])
    assert json.loads((root / "stopped" / "backup" / "latest.json").read_text()) == {"folder": "step_000000003"}
    return root, config


def damaged_copy(interrupted, tmp_path, damage):
    root, config = interrupted
    shutil.copytree(root / "stopped", tmp_path / "stopped")
    backup = tmp_path / "stopped" / "backup"
    damage(backup, backup / "step_000000003")
    return [o for o in config if not o.startswith("output_root=")] + [f"output_root={tmp_path}"], backup


def _edit_state(folder, **changes):
    state = json.loads((folder / "state.json").read_text())
    for key, value in changes.items():
        if key == "epochs":
            state["config"]["trainer"]["epochs"] = value
        else:
            state[key] = value
    (folder / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("damage, error, message", [
    (lambda backup, step: (backup / "latest.json").write_text("{not json"), BackupError, "latest.json"),
    (lambda backup, step: (step / "state.json").write_text("[]"), BackupError, "state.json"),
    (lambda backup, step: (step / "model.weights.h5").write_bytes((step / "model.weights.h5").read_bytes()[:2000]),
     BackupError, "model.weights.h5"),
    (lambda backup, step: _edit_state(step, step=99), BackupError, "at step 99, past the end of this run (4 steps)"),
    (lambda backup, step: _edit_state(step, epochs=5), RunConflict, "trainer.epochs: 5 -> 2"),
])
def test_an_unusable_backup_names_its_path_and_the_way_out(interrupted, tmp_path, damage, error, message, nothing_built):
    config, backup = damaged_copy(interrupted, tmp_path, damage)
    with pytest.raises(error) as raised:
        train(compose_config(config))
    assert message in str(raised.value)
    assert str(backup) in str(raised.value) and f"Delete {backup}" in str(raised.value)


def test_a_kill_during_a_backup_write_leaves_the_previous_backup(interrupted, tmp_path):
    """What a kill leaves mid-write (a hidden staging folder) is ignored, then removed."""
    def half_written(backup, step):
        (backup / ".step_000000004-killed").mkdir()
        (backup / ".step_000000004-killed" / "model.weights.h5").write_bytes(b"\x89HDF")

    config, backup = damaged_copy(interrupted, tmp_path, half_written)
    metrics = train(compose_config(config))
    assert metrics["steps_run"] == 4 and len(metrics["history"]["loss"]) == 2
    assert not backup.exists()  # deleted with everything in it once the model was saved


def test_jit_compile_auto_means_xla_on_jax_only():
    from keras_moe.training.building import resolve_jit_compile

    assert resolve_jit_compile("auto") == (keras.backend.backend() == "jax")
    assert resolve_jit_compile(True) is True and resolve_jit_compile(False) is False
    assert compose_config([]).trainer.jit_compile == "auto"
