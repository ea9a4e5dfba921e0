"""The progress bar's figures: loss, accuracy and two routing figures over every MoE layer."""

import math

import pytest

from keras_moe.training.progress import summarize


def test_the_bar_shows_the_worst_load_and_the_mean_dropped_share():
    logs = {"loss": 2.5, "sparse_categorical_accuracy": 0.25,
            "moe_0_load_max": 0.30, "moe_0_load_min": 0.1, "moe_0_dropped": 0.02, "moe_0_entropy": 1.3,
            "moe_1_load_max": 0.45, "moe_1_load_min": 0.05, "moe_1_dropped": 0.06, "moe_1_entropy": 1.1,
            "val_loss": 2.6, "val_sparse_categorical_accuracy": 0.2, "val_moe_0_load_max": 0.5, "val_moe_1_load_max": 0.35,
            "val_moe_0_dropped": 0.0, "val_moe_1_dropped": 0.1}
    assert summarize(logs) == pytest.approx({"loss": 2.5, "accuracy": 0.25, "load_max": 0.45, "dropped": 0.04,
                                             "val_loss": 2.6, "val_accuracy": 0.2, "val_load_max": 0.5, "val_dropped": 0.05})


def test_a_model_without_moe_layers_or_with_nan_statistics_shows_loss_and_accuracy():
    assert summarize({"loss": 1.0, "accuracy": 0.5}) == {"loss": 1.0, "accuracy": 0.5}
    # JAX's fit reports NaN routing statistics: they are left out rather than shown as nan
    assert summarize({"loss": 1.0, "moe_0_load_max": math.nan, "moe_0_dropped": math.nan}) == {"loss": 1.0}
