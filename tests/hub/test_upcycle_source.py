"""Upcycling from a path: a trained dense run becomes the recipe `shakespeare_upcycled`'s starting point
and `keras-moe upcycle`'s output, computing what the dense model computes; bad sources are named."""

import json

import keras
import numpy as np
import pytest

import keras_moe.hub as hub
from keras_moe.models import MoECausalLM
from keras_moe.training import train
from keras_moe.training.config import compose_config
from tests.cli.runs import run_command
from tests.hub.test_upcycle import SOURCES, numpy, trained_looking

TINY_LM = ["trainer=smoke", "trainer.epochs=1", "trainer.steps_per_epoch=2", "data.sequence_length=16", "data.batch_size=4",
           "data.max_validation_windows=8", "trainer.sample_length=2"]
TINY_BACKBONE = ["model.backbone.num_layers=1", "model.backbone.hidden_dim=16", "model.backbone.num_heads=2",
                 "model.backbone.num_kv_heads=1", "model.backbone.dense_intermediate_dim=24"]


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    """A trained tiny `shakespeare_dense` run folder."""
    root = tmp_path_factory.mktemp("dense")
    cfg = compose_config(["recipe=shakespeare_dense", *TINY_LM, *TINY_BACKBONE, f"output_dir={root}/run",
                          f"export.root={root}/saved", "export.enabled=false"])
    train(cfg)
    return root / "run"


def token_ids():
    return {"token_ids": np.random.default_rng(0).integers(1, 256, (2, 16)).astype("int32"),
            "padding_mask": np.ones((2, 16), "int32")}


def logits(model):
    return numpy(model(token_ids()))


def test_a_run_folder_upcycles_to_the_same_outputs(dense_run):
    dense = keras.models.load_model(dense_run / "model.keras", compile=False)
    moe = hub.upcycle_from(dense_run, num_experts=4, top_k=2, seed=0)
    assert isinstance(moe, MoECausalLM) and moe.preprocessor is not None
    assert moe.backbone.moe_layers[0].num_experts == 4
    np.testing.assert_allclose(logits(moe), logits(dense), atol=1e-5, rtol=0)


def test_the_upcycled_recipe_trains_from_the_dense_run(dense_run, tmp_path):
    cfg = compose_config(["recipe=shakespeare_upcycled", *TINY_LM, f"model.source={dense_run}", "model.num_experts=4",
                          f"output_dir={tmp_path}/run", f"export.root={tmp_path}/saved", "export.enabled=false"])
    metrics = train(cfg)
    assert metrics["steps_run"] == 2 and np.isfinite(metrics["validation"]["loss"])
    assert metrics["parameters"]["active"] < metrics["parameters"]["total"]
    assert all(len(shares) == 4 for shares in metrics["expert_load"].values())


def test_the_recipe_says_to_train_the_source_first(tmp_path):
    from keras_moe.training import ConfigError

    cfg = compose_config(["recipe=shakespeare_upcycled", *TINY_LM, f"output_root={tmp_path}", "export.enabled=false"])
    with pytest.raises(ConfigError, match="keras-moe train recipe=shakespeare_dense"):
        train(cfg)


def test_a_keras_hub_preset_directory_upcycles(tmp_path):
    dense = trained_looking(SOURCES["llama"]())
    dense.save_to_preset(str(tmp_path / "preset"))
    moe = hub.upcycle_from(tmp_path / "preset", num_experts=2, top_k=1)
    x = {"token_ids": np.array([[1, 5, 9, 3]], "int32"), "padding_mask": np.ones((1, 4), "int32")}
    np.testing.assert_allclose(numpy(moe(x)), numpy(dense(x)), atol=1e-5, rtol=0)


def test_unreadable_sources_are_named(tmp_path):
    with pytest.raises(ValueError, match="No dense model at .*missing.keras"):
        hub.load_dense(tmp_path / "missing.keras")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="Cannot upcycle from .*empty.*expected a keras-moe run folder"):
        hub.load_dense(tmp_path / "empty")


def test_the_upcycle_command_writes_a_loadable_moe_model(dense_run, tmp_path):
    done = run_command("upcycle", dense_run, tmp_path / "moe.keras", "--num-experts", 4, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["model"] == "MoECausalLM" and report["parameters"]["active"] < report["parameters"]["total"]
    moe = keras.models.load_model(tmp_path / "moe.keras", compile=False)
    dense = keras.models.load_model(dense_run / "model.keras", compile=False)
    np.testing.assert_allclose(logits(moe), logits(dense), atol=1e-5, rtol=0)
    bad = run_command("upcycle", dense_run, tmp_path / "moe.h5", cwd=tmp_path)
    assert bad.returncode != 0 and "must be a .keras file, got" in bad.stderr
