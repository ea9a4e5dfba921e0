"""Every multimodal recipe trains one step end to end on the real emoji data with a tiny model and
writes the artefacts of the text recipes (metrics JSON, expert-load heatmap, SavedModel) plus the
per-modality routing plot. Skips without the emoji font and list."""

import json
import math
import os

import keras
import pytest

from keras_moe.data.emoji import EMOJI_TEST_PATH, FONT_PATH, INSTALL_COMMAND
from keras_moe.training import compose_config, train
from keras_moe.training.config import recipe_names
from tests.conftest import also_on_jax

RECIPES = [name for name in recipe_names() if name.startswith("multimodal_")]
pytestmark = pytest.mark.skipif(not (os.path.isfile(FONT_PATH) and os.path.isfile(EMOJI_TEST_PATH)),
                                reason=f"emoji font or list missing; install with `{INSTALL_COMMAND}`")


def tiny_overrides(recipe, tmp_path):
    cfg = compose_config([f"recipe={recipe}"])
    overrides = [f"recipe={recipe}", "trainer=smoke", "trainer.epochs=1", "trainer.steps_per_epoch=1", f"output_dir={tmp_path}/run",
                 f"export.root={tmp_path}/saved",
                 "data.image_size=8", "data.batch_size=4", "data.sequence_length=6", "data.vocabulary_size=300"]
    if "backbone" in cfg.model:
        overrides += ["model.backbone.hidden_dim=8", "model.backbone.num_heads=2", "model.backbone.intermediate_dim=8",
                      "model.backbone.patch_size=4", "model.backbone.stem_filters=[4]", "model.backbone.num_layers=1"]
    else:
        overrides += [f"model.experts.{k}={v}" for k, v in (("image.filters", "[4]"), ("text.hidden_dim", "4"))
                      if (k.split(".")[0] in cfg.model.experts and cfg.model.experts[k.split(".")[0]] is not None)]
    return overrides


def test_every_multimodal_recipe_is_found():
    assert {"multimodal_limoe", "multimodal_modality_experts", "multimodal_mixture"} <= set(RECIPES)


# On JAX: the joint backbone with restricted routing and the mixture; each form's model trains on both
# backends in tests/models/multimodal/test_models.py.
@pytest.mark.parametrize("recipe", also_on_jax(RECIPES, {"multimodal_modality_experts", "multimodal_mixture"},
                                               "the TensorFlow pass trains every recipe; JAX: the backbone and the mixture"))
def test_multimodal_recipe_trains_one_step_and_writes_artefacts(recipe, tmp_path):
    cfg = compose_config(tiny_overrides(recipe, tmp_path))
    metrics = train(cfg)
    assert metrics["epochs_run"] == 1 and math.isfinite(metrics["validation"]["loss"])
    for shares in metrics["expert_load"].values():
        assert abs(sum(shares) - 1.0) < 1e-4
    run = tmp_path / "run"
    for artefact in ("metrics.json", "model.keras", "config.yaml", "history.csv"):
        assert (run / artefact).is_file()
    assert json.loads((run / "metrics.json").read_text())["name"] == cfg.name
    if metrics["expert_load"]:
        assert (run / "expert_load.png").stat().st_size > 1000
    if "modality_routing" in metrics:
        assert (run / "modality_routing.png").stat().st_size > 1000
        for entry in metrics["modality_routing"].values():
            assert math.isfinite(entry["modality_purity"])
            if recipe == "multimodal_modality_experts":
                assert entry["modality_purity"] == 1.0  # restricted routing: every expert serves one modality
    if metrics["backbone_parameters_analytic"] is not None:
        head = metrics["parameters"]["total"] - metrics["backbone_parameters_analytic"]["total"]
        assert 0 <= head <= 2 * 8 * 9 + 9  # only the classifier head (two pooled modalities x 9 classes)
    if keras.backend.backend() == "tensorflow":
        assert (tmp_path / "saved" / cfg.name / "1" / "saved_model.pb").is_file()
