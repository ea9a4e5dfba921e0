"""Routed assignments per (modality, expert): how far each expert specialises in one modality."""

import keras
from keras import ops

from keras_moe.distribution.replicas import cross_replica_sum


@keras.saving.register_keras_serializable(package="keras_moe")
class ModalityRoutingStats(keras.metrics.Metric):
    """Routed assignments per (modality, expert), accumulated over an epoch.

    `result()`: `{name}_modality_purity`, the share of assignments that go to an expert whose
    majority modality is the token's own (1.0: every expert serves one modality; with no
    specialisation it falls to about the largest modality's share of tokens).
    `counts()` gives the `[m, e]` matrix; `shares()` its rows normalised (per modality, the share
    of that modality's assignments each expert receives). Under a `tf.distribute` strategy each
    batch's counts are summed over replicas (as `RoutingStats` does).
    """

    def __init__(self, num_modalities, num_experts, name="modality_routing", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_modalities = num_modalities
        self.num_experts = num_experts
        self.assignment_counts = self.add_variable(shape=(num_modalities, num_experts), initializer="zeros", name="counts")

    def update_state(self, counts):
        self.assignment_counts.assign_add(cross_replica_sum(ops.stop_gradient(ops.cast(counts, "float32"))))

    def counts(self):
        return ops.convert_to_tensor(self.assignment_counts)

    def shares(self):
        counts = self.counts()
        return counts / ops.maximum(ops.sum(counts, axis=1, keepdims=True), 1.0)

    def result(self):
        counts = self.counts()
        total = ops.sum(counts)
        purity = ops.sum(ops.max(counts, axis=0)) / ops.maximum(total, 1.0)
        return {f"{self.name}_modality_purity": ops.where(total > 0, purity, float("nan"))}

    def get_config(self):
        return {"num_modalities": self.num_modalities, "num_experts": self.num_experts, "name": self.name}
