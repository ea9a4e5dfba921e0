"""The classical mixture-of-experts objective (Jacobs, Jordan, Nowlan & Hinton 1991, eq. 1.2)."""

import keras
from keras import ops

from keras_moe.losses.combination import COMBINATIONS, combine_expert_outputs


def pack_mixture(expert_outputs, gate_weights):
    """Expert outputs `[b, e, d]` and gate weights `[b, e]` as one tensor `[b, e, d + 1]`: the
    `y_pred` of the mixture losses below (a Keras loss takes one prediction tensor)."""
    return ops.concatenate([ops.cast(expert_outputs, "float32"), ops.cast(gate_weights, "float32")[:, :, None]], axis=-1)


@keras.saving.register_keras_serializable(package="keras_moe")
class MixtureOfExpertsLoss(keras.losses.Loss):
    """`sum_e g_e * loss(y_true, expert_e)`: each expert is judged on its own prediction.

    Unlike a loss on the gated sum, this makes experts compete for examples instead of cooperating,
    which is what lets them specialise (Jacobs et al. 1991). `y_pred` is `pack_mixture(expert
    outputs [b, e, d], gate weights [b, e])`: the gate weights as one last feature, `[b, e, d + 1]`.

    Args:
        loss: the per-expert loss, any Keras loss identifier (e.g. `"sparse_categorical_crossentropy"`,
            `"mse"`); it must return one value per example.

    Example:

    ```python
    loss = keras_moe.losses.MixtureOfExpertsLoss("mse")
    y_pred = keras_moe.losses.pack_mixture(np.array([[[1.0], [3.0]]]), np.array([[0.5, 0.5]]))  # experts: 1 and 3
    assert abs(float(loss(np.array([[1.0]], "float32"), y_pred)) - 2.0) < 1e-6  # 0.5 * 0 + 0.5 * 4
    ```
    """

    def __init__(self, loss="sparse_categorical_crossentropy", name="mixture_of_experts_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = keras.losses.get(loss)
        if self.loss is None:
            raise ValueError(f"`loss` must be a Keras loss identifier. Received: loss={loss!r}")

    def call(self, y_true, y_pred):
        expert_outputs, gates = y_pred[..., :-1], y_pred[..., -1]  # [b, e, d], [b, e]
        num_experts = ops.shape(expert_outputs)[1]
        per_expert = [self._per_example(y_true, expert_outputs[:, i]) for i in range(num_experts)]
        return ops.sum(ops.stack(per_expert, axis=1) * gates, axis=1)

    def _per_example(self, y_true, y_pred):
        if isinstance(self.loss, keras.losses.Loss):
            # Loss objects reduce; their wrapped function returns one value per example.
            return self.loss.call(y_true, y_pred)
        return self.loss(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config["loss"] = keras.losses.serialize(self.loss)
        return config


@keras.saving.register_keras_serializable(package="keras_moe")
class SeparateExpertsAndGateLoss(keras.losses.Loss):
    """`sum_e CE(y, p_e) + CE(y, combine(stop_gradient(p), g))`: experts and gate trained apart.

    Each expert is trained on its own cross-entropy, unscaled by the gate, so its gradient is the one
    it would get trained alone: the gate cannot starve an expert of training signal by weighting it
    down early (the failure of `MixtureOfExpertsLoss` and of the likelihood objective when one
    expert fits the training set faster). The gate is trained on the cross-entropy of the combined
    prediction with the experts' outputs held fixed (`stop_gradient`), so it only learns how to
    weight them, as the combiner of stacked generalisation (Wolpert 1992) or a late-fusion head
    over per-modality classifiers each trained on its own loss (Wang, Tran & Feiszli 2020,
    "What makes training multi-modal classification networks hard?").

    `y_pred` is `pack_mixture(expert class probabilities [b, e, d], gate weights [b, e])`, `[b, e, d + 1]`.
    Labels are sparse class ids.

    Args:
        combination: `"arithmetic"` or `"geometric"`, as the mixture combines (`combine_expert_outputs`).

    Example:

    ```python
    loss = keras_moe.losses.SeparateExpertsAndGateLoss("arithmetic")
    y_pred = keras_moe.losses.pack_mixture(np.array([[[0.5, 0.5], [1.0, 0.0]]]), np.array([[0.5, 0.5]]))
    assert abs(float(loss(np.array([0]), y_pred)) - 0.9808) < 1e-4  # -log 0.5 - log 1 - log 0.75
    ```
    """

    def __init__(self, combination="arithmetic", name="separate_experts_and_gate_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if combination not in COMBINATIONS:
            raise ValueError(f"`combination` must be one of {list(COMBINATIONS)}. Received: combination={combination!r}")
        self.combination = combination

    def call(self, y_true, y_pred):
        expert_outputs, gates = y_pred[..., :-1], y_pred[..., -1]  # [b, e, d], [b, e]
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        num_experts = expert_outputs.shape[1]
        experts = sum(keras.losses.sparse_categorical_crossentropy(y_true, expert_outputs[:, i]) for i in range(num_experts))
        combined = combine_expert_outputs(ops.stop_gradient(expert_outputs), gates, self.combination)
        return experts + keras.losses.sparse_categorical_crossentropy(y_true, combined)

    def get_config(self):
        config = super().get_config()
        config["combination"] = self.combination
        return config
