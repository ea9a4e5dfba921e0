"""`conf/strategy/`: every option composes; bad distributed settings fail early and name the values."""

import json
import types

import keras
import pytest

from keras_moe.cli import launch
from keras_moe.distribution import expert_parallel_distribution, parse_tf_config, worker_tf_configs
from keras_moe.training import strategies
from keras_moe.training.building import ConfigError, build_model
from keras_moe.training.config import compose_config

OPTIONS = ["default", "mirrored", "multi_worker_mirrored", "tpu", "data_parallel", "expert_parallel"]
tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute")
jax_only = pytest.mark.skipif(keras.backend.backend() != "jax", reason="keras.distribution")


@pytest.mark.parametrize("option", OPTIONS)
def test_strategy_option_names_a_factory_that_takes_its_arguments(option):
    import inspect

    import hydra
    from omegaconf import OmegaConf

    cfg = compose_config([f"strategy={option}", "model=moe_lm_tiny"])
    arguments = OmegaConf.to_container(cfg.strategy, resolve=True)
    factory = hydra.utils.get_method(arguments.pop("_target_"))
    inspect.signature(factory).bind(**arguments)  # raises TypeError for a key the factory does not take
    assert factory is getattr(strategies, factory.__name__)
    if option == "default":
        strategy = hydra.utils.instantiate(cfg.strategy)
        assert (strategy is None) == (keras.backend.backend() != "tensorflow")


def test_expert_parallel_reads_the_models_expert_count():
    assert compose_config(["strategy=expert_parallel", "model=moe_lm_tiny"]).strategy.num_experts == 4


def test_batch_not_divisible_by_replicas_fails_before_building():
    cfg = compose_config(["model=moe_lm_tiny", "data.batch_size=6"])
    with pytest.raises(ConfigError, match=r"batch_size=6, replicas=4"):
        build_model(cfg, types.SimpleNamespace(num_replicas_in_sync=4))


@tensorflow_only
def test_more_replicas_than_devices_fails():
    with pytest.raises(ValueError, match=r"num_replicas=3 .* 1 device"):
        strategies.mirrored_strategy(num_replicas=3)


@tensorflow_only
def test_cpu_split_after_start_up_fails_with_the_count():
    keras.ops.ones(1)  # TensorFlow's runtime is up: its CPU can no longer be split
    with pytest.raises(ValueError, match=r"cpu_devices=2"):
        strategies.mirrored_strategy(cpu_devices=2)


@pytest.mark.parametrize("text, message", [
    ("", "not set"),
    ("{not json", "not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "cluster.worker"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "'localhost'"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "index=2"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "'chief'"),
])
def test_malformed_tf_config_names_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_tf_config(text)


def test_worker_tf_configs_are_valid():
    configs = worker_tf_configs(["127.0.0.1:1234", "127.0.0.1:1235"])
    assert [parse_tf_config(c)["task"]["index"] for c in configs] == [0, 1]
    assert json.loads(configs[1])["cluster"]["worker"] == ["127.0.0.1:1234", "127.0.0.1:1235"]


@tensorflow_only
def test_multi_worker_strategy_checks_tf_config_first(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 5}}')
    with pytest.raises(ValueError, match="index=5"):
        strategies.multi_worker_mirrored_strategy()


def test_strategies_for_the_other_backend_say_so():
    if keras.backend.backend() == "jax":
        with pytest.raises(ValueError, match="KERAS_BACKEND=tensorflow"):
            strategies.mirrored_strategy()
    else:
        with pytest.raises(ValueError, match="KERAS_BACKEND=jax"):
            strategies.expert_parallel_strategy(num_experts=8, expert_axis_size=2)


@jax_only
@pytest.mark.parametrize("kwargs, message", [
    (dict(num_experts=6, expert_axis_size=4), "num_experts=6, expert_axis_size=4"),
    (dict(num_experts=8, expert_axis_size=4, batch_axis_size=2), "needs 8 devices; 4 available"),
    (dict(num_experts=8, expert_axis_size=0), "expert_axis_size=0"),
])
def test_bad_expert_mesh_fails_with_the_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        expert_parallel_distribution(devices=["cpu:0", "cpu:1", "cpu:2", "cpu:3"], **kwargs)


@pytest.mark.parametrize("argv, message", [
    (["--workers", "2", "train"], "missing `--`"),
    (["--workers", "0", "--", "train"], "--workers=0"),
    (["--workers", "2", "--", "evaluate"], "runs `train`"),
    (["--workers", "2", "--", "train", "-m", "model=moe_lm_tiny"], "multirun"),
])
def test_launch_rejects_bad_arguments(argv, message):
    with pytest.raises(SystemExit, match=message):
        launch.parse_args(argv)


def test_launch_gives_each_worker_its_own_output(tmp_path):
    commands = launch.worker_commands(["train", "model=moe_lm_tiny", f"output_dir={tmp_path}"], 2)
    assert all("strategy=multi_worker_mirrored" in c for c in commands)
    assert commands[0][-1] == f"output_dir={tmp_path}"
    assert f"output_dir={tmp_path}/worker_1" in commands[1] and "export.enabled=false" in commands[1]
