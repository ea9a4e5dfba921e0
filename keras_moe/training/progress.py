"""The training progress bar: loss, accuracy and two routing figures over all MoE layers.

Keras's own bar prints every logged value, six per MoE layer, so a step's line wraps over the
screen. This one shows the loss, the accuracy, `load_max` (the largest share of assignments one
expert takes, over every MoE layer: `1 / num_experts` when balanced) and `dropped` (the share of
assignments dropped for capacity, averaged over the MoE layers), and their `val_` values at the end
of an epoch. The per-layer values stay in `History`, `metrics.json`, `history.csv` and TensorBoard.
"""

import math

import keras


def summarize(logs):
    """The few values the bar shows, from a `fit` logs dict (per-layer routing metrics aggregated)."""
    summary = {}
    for prefix in ("", "val_"):
        for key in ("loss", "accuracy", "sparse_categorical_accuracy"):
            if prefix + key in logs:
                summary[prefix + ("accuracy" if key.endswith("accuracy") else key)] = logs[prefix + key]
        load_max = _values(logs, prefix, "_load_max")
        if load_max:
            summary[prefix + "load_max"] = max(load_max)
        dropped = _values(logs, prefix, "_dropped")
        if dropped:
            summary[prefix + "dropped"] = sum(dropped) / len(dropped)
    return summary


def _values(logs, prefix, suffix):
    """Finite float values of the keys `<prefix><layer><suffix>` (a NaN, as JAX's `fit` reports, is left out)."""
    values = []
    for key, value in logs.items():
        if key.endswith(suffix) and key.startswith(prefix) and (prefix or not key.startswith("val_")):
            value = float(value)
            if math.isfinite(value):
                values.append(value)
    return values


class RoutingProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar showing `summarize(logs)`; `epochs` is the run's total (a resumed run's
    `fit` calls start at a later epoch)."""

    def __init__(self, epochs):
        super().__init__()
        self.total_epochs = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, summarize(logs or {}))

    def on_test_batch_end(self, batch, logs=None):
        super().on_test_batch_end(batch, summarize(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, summarize(logs or {}))

    def on_test_end(self, logs=None):
        super().on_test_end(summarize(logs or {}))
