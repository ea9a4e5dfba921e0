"""Hydra configs and recipes: every option composes, every recipe trains one step, bad values fail early."""

import json
import math

import keras
import numpy as np
import pytest
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf.errors import ConfigKeyError

import keras_moe
from keras_moe.training import ConfigError, build_data, build_model, build_optimizer, train
from keras_moe.training.config import compose_config, recipe_names
from tests.cli.runs import ROOT
from tests.conftest import also_on_jax

# Multimodal recipes need other tiny overrides: tests/models/multimodal/test_recipes.py runs each of them.
# shakespeare_upcycled starts from a trained dense run: tests/hub/test_upcycle_source.py trains it.
RECIPES = [name for name in recipe_names() if not name.startswith("multimodal_") and name != "shakespeare_upcycled"]
GROUPS = {group: sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
          for group in ("model", "model/router", "model/experts", "data", "optimizer", "trainer", "strategy", "export")}
CLASSES = ["art", "computers", "science"]


@pytest.fixture(scope="module")
def fortunes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fortunes")
    words = {"art": "paint brush canvas colour museum", "computers": "kernel program bug compiler memory",
             "science": "atom physics theory experiment cell"}
    for name, vocabulary in words.items():
        items = [f"the {w} and the {vocabulary.split()[(i + 1) % 5]} number {i}" for i, w in enumerate(vocabulary.split() * 8)]
        (root / name).write_text("\n%\n".join(items) + "\n")
    return root


def tiny_overrides(recipe, tmp_path, fortunes_root):
    """One step of `recipe` on a tiny model; classifier recipes read a 3-category fixture."""
    cfg = compose_config([f"recipe={recipe}"])
    overrides = [f"recipe={recipe}", "trainer=smoke", "trainer.epochs=1", "trainer.steps_per_epoch=1", f"output_dir={tmp_path}/run",
                 f"export.root={tmp_path}/saved"]
    if cfg.model._target_.endswith("MoECausalLM"):
        overrides += ["model.backbone.num_layers=1", "model.backbone.hidden_dim=16", "model.backbone.num_heads=2",
                      "model.backbone.num_kv_heads=1", "model.backbone.intermediate_dim=8", "data.sequence_length=16",
                      "data.batch_size=4", "data.max_validation_windows=8"]
    else:
        overrides += ["model.backbone.hidden_dim=16", "model.backbone.num_heads=2", "model.backbone.intermediate_dim=8",
                      f"data.root={fortunes_root}", f"data.categories=[{','.join(CLASSES)}]", "data.num_classes=3",
                      "data.vocabulary_size=60", "data.sequence_length=12", "data.batch_size=4"]
    return overrides


def _leaves(node, prefix=()):
    """`(path, value)` of every leaf of a plain YAML mapping (interpolations and `defaults` left out)."""
    for key, value in node.items():
        if key == "defaults":
            continue
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        elif not (isinstance(value, str) and "${" in value):
            yield prefix + (key,), value


@pytest.mark.parametrize("group, option", [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_config_option_composes_and_takes_effect(group, option):
    import yaml
    from omegaconf import OmegaConf

    path = ROOT / "conf" / group / f"{option}.yaml"
    text = path.read_text()
    header = [line.split("@package", 1)[1].strip() for line in text.splitlines() if "@package" in line]
    package = header[0] if header else group.replace("/", ".")
    cfg = compose_config([f"{group}={option}"])
    composed = OmegaConf.to_container(OmegaConf.select(cfg, package), resolve=False)
    leaves = list(_leaves(yaml.safe_load(text) or {}))
    assert leaves, f"{path} sets nothing"
    for keys, value in leaves:
        node = composed
        for key in keys:
            node = node[key]
        assert node == value, (path, keys)
    if group == "model/router":  # routers are cheap to build: instantiate them
        router = keras_moe.routing.get(OmegaConf.to_container(cfg.model.backbone.router), num_experts=cfg.model.backbone.num_experts)
        assert isinstance(router, keras_moe.routing.Router)
    if group == "optimizer":
        assert isinstance(build_optimizer(cfg), keras.optimizers.Optimizer)


# On JAX an end-to-end run costs about a minute of op compilation; the router_* recipes differ from
# these only in the router, and every router trains on both backends in tests/routing and tests/layers.
@pytest.mark.parametrize("recipe", also_on_jax(RECIPES, {"shakespeare_moe", "shakespeare_dense", "switch_classifier"},
                                               "the TensorFlow pass trains every recipe; JAX: a representative three"))
def test_every_recipe_trains_one_step(recipe, tmp_path, fortunes_root):
    cfg = compose_config(tiny_overrides(recipe, tmp_path, fortunes_root))
    metrics = train(cfg)
    assert metrics["epochs_run"] == 1
    assert math.isfinite(metrics["validation"]["loss"])
    for shares in metrics["expert_load"].values():  # measured eagerly, so on every backend
        assert abs(sum(shares) - 1.0) < 1e-4
    head = metrics["parameters"]["total"] - metrics["backbone_parameters_analytic"]["total"]  # from the config
    assert 0 <= head <= 16 * 4 + 4  # only a classifier adds weights (its head) to the backbone's count
    for artefact in ("metrics.json", "model.keras", "config.yaml", "history.csv"):
        assert (tmp_path / "run" / artefact).is_file()
    if metrics["expert_load"]:
        assert (tmp_path / "run" / "expert_load.png").stat().st_size > 1000
    if keras.backend.backend() == "tensorflow":
        assert (tmp_path / "saved" / cfg.name / "1" / "saved_model.pb").is_file()
    if "samples" in metrics:
        assert all(text.startswith(prompt) for prompt, text in metrics["samples"].items())
    if "baselines" in metrics:
        assert 0 < metrics["baselines"]["majority"] <= 1


def test_lm_backbone_counts_match_the_config_count(tmp_path, fortunes_root):
    cfg = compose_config(tiny_overrides("shakespeare_moe", tmp_path, fortunes_root))
    model = build_model(cfg)
    from keras_moe import count_params
    from keras_moe.training import backbone_parameter_count

    analytic = backbone_parameter_count(cfg)
    assert analytic["total"] == model.count_params()
    assert analytic["active"] == count_params(model)["active"]


def test_mixtral_shape_is_published_size():
    from keras_moe.training import backbone_parameter_count

    counts = backbone_parameter_count(compose_config(["model=mixtral_8x7b"]))
    assert round(counts["total"] / 1e9, 1) == 46.7 and round(counts["active"] / 1e9, 1) == 12.9


@pytest.mark.parametrize("override, message", [
    ("model/router=nope", "nope"),
    ("recipe=nope", "nope"),
])
def test_unknown_group_option_fails_at_compose(override, message):
    with pytest.raises((ConfigCompositionException, HydraException), match=message):
        compose_config([override])


def test_typo_in_key_fails_at_compose():
    with pytest.raises((ConfigCompositionException, ConfigKeyError, HydraException), match="hiden_dim"):
        compose_config(["model.backbone.hiden_dim=8"])


@pytest.mark.parametrize("override, message", [
    ("model.backbone.num_layers=-1", "num_layers=-1"),
    ("model.backbone.router.config.top_k=9", "top_k"),
    ("model.backbone.intermediate_dim=0", "intermediate_dim=0"),
    ("model.backbone.dispatch=sparse", "dispatch='sparse'"),
    ("model.backbone.router.config.load_balancing_loss_weight=-1", "load_balancing_loss_weight=-1"),
    ("optimizer.learning_rate.warmup_target=-1", "learning rate"),
    ("optimizer=adam optimizer.learning_rate=-1", "learning_rate"),
])
def test_bad_values_fail_before_training(override, message):
    cfg = compose_config(override.split())
    with pytest.raises(ConfigError, match=message):
        build_model(cfg)


def test_bad_data_value_fails_before_training():
    with pytest.raises(ConfigError, match="sequence_length=0"):
        build_data(compose_config(["data.sequence_length=0"]))


class StopAfter(keras.callbacks.Callback):
    def __init__(self, steps):
        super().__init__()
        self.steps, self.seen = steps, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.steps:
            raise KeyboardInterrupt("simulated interruption")


class FirstStep(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if not hasattr(self, "iterations"):
            self.iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))


def test_an_interrupted_run_resumes_exactly(tmp_path, corpus):
    """Stopped inside epoch 2 and run again, the run ends as an uninterrupted one: same weights, same
    logs for every epoch (on each backend; tests/cli/test_kill.py does it with kill -9 on TensorFlow)."""
    from keras_moe.training.run_folder import RunFolder
    from tests.cli.runs import tiny_run

    config = tiny_run(corpus, f"output_root={tmp_path}", "export.enabled=false", "trainer.epochs=2",
                      "trainer.steps_per_epoch=3", "trainer.backup_freq=2")
    expected = train(compose_config([*config, "name=uninterrupted"]))
    with pytest.raises(KeyboardInterrupt):
        train(compose_config([*config, "name=interrupted"]), extra_callbacks=[StopAfter(5)])
    first = FirstStep()
    resumed = train(compose_config([*config, "name=interrupted"]), extra_callbacks=[first])
    assert first.iterations == 4  # the backup of step 4 (every 2 steps), inside epoch 2: not 0, not 3
    assert (resumed["steps_run"], len(resumed["history"]["loss"])) == (6, 2)
    assert json.dumps(resumed["history"], sort_keys=True) == json.dumps(expected["history"], sort_keys=True)
    for mine, theirs in zip(RunFolder(tmp_path / "interrupted").load_model().get_weights(),
                            RunFolder(tmp_path / "uninterrupted").load_model().get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
