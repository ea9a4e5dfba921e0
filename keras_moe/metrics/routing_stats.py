"""Routing diagnostics as one Keras metric per MoE layer, shown by `model.fit` and in History."""

import keras
from keras import ops
from keras.src.backend.common.stateless_scope import get_stateless_scope, in_stateless_scope

from keras_moe.distribution.replicas import cross_replica_sum


def stats_are_writable(metric):
    """False inside a JAX stateless forward pass that does not carry the metric's variables.

    Keras 3's JAX trainer maps only trainable and non-trainable weights into the forward pass
    (`Layer.stateless_call`); metric variables of sublayers are not there, and updates to them would
    be lost. On JAX `model.fit` therefore shows no routing statistics; call the layer eagerly (or
    use the TensorFlow backend) to read them. On TensorFlow and PyTorch this is always True.
    """
    if not in_stateless_scope():
        return True
    return get_stateless_scope().get_current_value(metric.variables[0]) is not None


@keras.saving.register_keras_serializable(package="keras_moe")
class RoutingStats(keras.metrics.Metric):
    """Accumulates a MoE layer's routing over the batches of an epoch.

    `result()` returns a dict of scalars, each key prefixed with `name` (so that several MoE layers
    report side by side):

    - `{name}_load_max`, `{name}_load_min`: the largest and smallest share of routed assignments
      taken by one expert (`1 / num_experts` each when balanced);
    - `{name}_dropped`: share of (token, choice) assignments dropped for lack of capacity (for
      expert choice: share of tokens no expert picked);
    - `{name}_entropy`: mean router entropy in nats;
    - `{name}_{aux}` for each auxiliary loss the router reports (weighted values).

    `expert_load()` returns the per-expert shares `[e]` (for heatmaps). Padding counts nowhere.
    Every value is NaN until a batch has been recorded.

    Args:
        num_experts: int.
        aux_loss_names: names of the router's auxiliary losses.
        name: metric name and key prefix.
    """

    def __init__(self, num_experts, aux_loss_names=(), name="routing", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_experts = num_experts
        self.aux_loss_names = tuple(aux_loss_names)
        self.expert_counts = self.add_variable(shape=(num_experts,), initializer="zeros", name="expert_counts")
        self.assignments = self.add_variable(shape=(), initializer="zeros", name="assignments")
        self.dropped = self.add_variable(shape=(), initializer="zeros", name="dropped")
        self.tokens = self.add_variable(shape=(), initializer="zeros", name="tokens")
        self.entropy_sum = self.add_variable(shape=(), initializer="zeros", name="entropy_sum")
        self.batches = self.add_variable(shape=(), initializer="zeros", name="batches")
        self.aux_sums = self.add_variable(shape=(max(1, len(self.aux_loss_names)),), initializer="zeros", name="aux_sums")

    def update_state(self, expert_counts, dropped, assignments, entropy_sum, tokens, aux_losses=None):
        """All arguments are batch totals (float32 scalars, `expert_counts` is `[e]`).

        Under a `tf.distribute` strategy the totals are summed over replicas first (one all-reduce),
        so every replica holds statistics of the global batch and `result()` describes it whether
        Keras reads one replica (per-step logs) or sums them (epoch logs): all results are ratios.
        """
        e, names = self.num_experts, self.aux_loss_names
        aux = [ops.cast((aux_losses or {}).get(n, 0.0), "float32") for n in names]
        scalars = [assignments, dropped, tokens, entropy_sum, 1.0] + aux
        packed = ops.concatenate([ops.reshape(ops.cast(expert_counts, "float32"), (e,)),
                                  ops.stack([ops.cast(v, "float32") for v in scalars])])
        packed = cross_replica_sum(ops.stop_gradient(packed))
        self.expert_counts.assign_add(packed[:e])
        self.assignments.assign_add(packed[e])
        self.dropped.assign_add(packed[e + 1])
        self.tokens.assign_add(packed[e + 2])
        self.entropy_sum.assign_add(packed[e + 3])
        self.batches.assign_add(packed[e + 4])
        if names:
            self.aux_sums.assign_add(packed[e + 5:])

    def expert_load(self):
        """Share of routed assignments per expert, `[e]`."""
        return self.expert_counts / ops.maximum(ops.sum(self.expert_counts), 1.0)

    def result(self):
        load = self.expert_load()
        results = {
            f"{self.name}_load_max": ops.max(load),
            f"{self.name}_load_min": ops.min(load),
            f"{self.name}_dropped": self.dropped / ops.maximum(self.assignments, 1.0),
            f"{self.name}_entropy": self.entropy_sum / ops.maximum(self.tokens, 1.0),
        }
        for i, aux_name in enumerate(self.aux_loss_names):
            results[f"{self.name}_{aux_name}"] = self.aux_sums[i] / ops.maximum(self.batches, 1.0)
        # NaN, not a misleading 0, until a batch has been recorded (e.g. during `fit` on JAX).
        seen = self.batches > 0
        return {key: ops.where(seen, value, float("nan")) for key, value in results.items()}

    def get_config(self):
        return {"num_experts": self.num_experts, "aux_loss_names": list(self.aux_loss_names), "name": self.name}
