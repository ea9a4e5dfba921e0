"""A mixture over whole Keras models as experts (Jacobs et al. 1991; Jordan & Jacobs 1994), or
their gated product (Hinton 2002).

Axis letters: `b` batch, `e` experts, `d` output features.
"""

import math

import keras
from keras import ops

from keras_moe import routing
from keras_moe.losses.combination import COMBINATIONS, combine_expert_outputs
from keras_moe.routing.token_choice import TokenChoiceRouting
from keras_moe.utils.validation import check_choice, check_fraction, check_positive_int

_EPSILON = 1e-7


def smooth_gates(gates, smoothing):
    """`(1 - smoothing) * g + smoothing / e`: mixes the gate with the uniform distribution, so that
    every expert keeps at least `smoothing / e` of the weight (still sums to 1 over `e`)."""
    if not smoothing:
        return gates
    return (1.0 - smoothing) * gates + smoothing / ops.shape(gates)[-1]


def drop_experts(gates, rate, seed_generator):
    """Expert dropout: with probability `rate` per example, one expert drawn uniformly loses its weight
    and the others are renormalised (`[b, e] -> [b, e]`, rows still sum to 1).

    The combination then has to predict without that expert, so neither the gate nor the other
    experts can rely on any single expert for every example (dropout applied to whole experts,
    Srivastava et al. 2014; the same idea per modality is ModDrop, Neverova et al. 2016).
    """
    num_experts = ops.shape(gates)[-1]
    draw = keras.random.uniform(ops.shape(gates)[:1], seed=seed_generator)  # [b]
    dropped = ops.cast(ops.floor(keras.random.uniform(ops.shape(gates)[:1], seed=seed_generator) * num_experts), "int32")
    keep = 1.0 - ops.one_hot(ops.minimum(dropped, num_experts - 1), num_experts) * ops.cast(draw < rate, gates.dtype)[:, None]
    kept = gates * keep
    return kept / ops.maximum(ops.sum(kept, axis=-1, keepdims=True), _EPSILON)


@keras.saving.register_keras_serializable(package="keras_moe")
class MixtureOfModels(keras.layers.Layer):
    """Weights the predictions of arbitrary expert models by a gating network.

    Each expert is any Keras layer or model and may read its own input (e.g. a text model on the
    name and an image model on the pixels); all experts must produce outputs of the same shape
    `[b, d]`. The gate sees every input: `gate_network` (any Keras layer taking the list of inputs;
    default: flatten and concatenate them) feeds a router (default a `DenseGate`, softmax over all
    experts), giving per-example weights `[b, e]` that sum to 1.

    Outputs `sum_e g[b, e] * expert_e(x)[b, :]` (`combination="arithmetic"`), or, for experts that
    output class probabilities, their gated product `softmax(sum_e g[b, e] * log expert_e(x)[b, :])`
    (`combination="geometric"`, a product of experts; see `combine_expert_outputs`). With
    `return_expert_outputs=True` the layer returns a dict: `"prediction"` (the mixture),
    `"expert_outputs" [b, e, d]` and `"gate_weights" [b, e]`, from which the classical objective
    `sum_e g_e * loss(y, expert_e)` (Jacobs et al. 1991, eq. 1.2; `MixtureOfExpertsLoss` on
    `pack_mixture(expert_outputs, gate_weights)`) is computed without a second forward pass.

    Args:
        experts: list of Keras layers/models.
        expert_inputs: optional list of ints, the input index each expert reads (default: all read
            input 0).
        gate_network: optional Keras layer mapping the list of inputs to gate features `[b, g]`.
        gate: router spec for the gate (name, `Router` instance or dict; default `"dense"`).
        return_expert_outputs: bool, see above.
        combination: `"arithmetic"` (default) or `"geometric"`, see `combine_expert_outputs`.
        gate_smoothing: float in [0, 1): the gate is mixed with the uniform distribution,
            `(1 - s) g + s / e` (in `gate_probabilities` too), so no expert's weight falls below `s / e`.
        expert_dropout: float in [0, 1): when training, each example loses one randomly chosen
            expert with this probability, the other weights renormalised (`drop_experts`).
        seed: optional int, for `expert_dropout`.

    Call args:
        inputs: one tensor or a list of tensors.

    Example:

    ```python
    text = keras.Sequential([keras.layers.Dense(3, activation="softmax")])
    image = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    mixture = keras_moe.experts.MixtureOfModels([text, image], expert_inputs=[0, 1])
    prediction = mixture([np.ones((2, 5), "float32"), np.ones((2, 4, 4), "float32")])
    assert tuple(prediction.shape) == (2, 3)
    ```
    """

    def __init__(
        self,
        experts,
        expert_inputs=None,
        gate_network=None,
        gate="dense",
        return_expert_outputs=False,
        combination="arithmetic",
        gate_smoothing=0.0,
        expert_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(experts, (list, tuple)) or len(experts) < 2:
            raise ValueError(f"`experts` must be a list of at least 2 Keras layers. Received: experts={experts!r}")
        self.experts = [_as_layer(e, "experts") for e in experts]
        num_experts = len(self.experts)
        if expert_inputs is None:
            expert_inputs = [0] * num_experts
        if len(expert_inputs) != num_experts:
            raise ValueError(
                f"`expert_inputs` needs one input index per expert ({num_experts}). Received: expert_inputs={expert_inputs!r}"
            )
        self.expert_inputs = [check_positive_int("expert_inputs", i, allow_zero=True) for i in expert_inputs]
        self.gate_network = None if gate_network is None else _as_layer(gate_network, "gate_network")
        self.gate = gate if isinstance(gate, routing.Router) else routing.get(gate, num_experts=num_experts)
        if self.gate.routing_type is not TokenChoiceRouting or self.gate.num_experts != num_experts:
            raise ValueError(f"`gate` must be a token-choice router over {num_experts} experts. Received: gate={gate!r}")
        self.return_expert_outputs = bool(return_expert_outputs)
        self.combination = check_choice("combination", combination, COMBINATIONS)
        self.gate_smoothing = check_fraction("gate_smoothing", gate_smoothing)
        self.expert_dropout = check_fraction("expert_dropout", expert_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.expert_dropout else None

    @property
    def num_experts(self):
        return len(self.experts)

    def _inputs(self, inputs):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        needed = max(self.expert_inputs) + 1
        if len(inputs) < needed:
            raise ValueError(f"`MixtureOfModels` needs {needed} inputs for `expert_inputs={self.expert_inputs}`; received {len(inputs)}.")
        return inputs

    def gate_features(self, inputs):
        inputs = self._inputs(inputs)
        if self.gate_network is not None:
            return self.gate_network(inputs if len(inputs) > 1 else inputs[0])
        flat = [ops.reshape(ops.cast(x, "float32"), (-1, _features(x))) for x in inputs]
        return ops.concatenate(flat, axis=-1) if len(flat) > 1 else flat[0]

    def gate_probabilities(self, inputs, training=False):
        """Per-example expert weights `[b, e]` (after `gate_smoothing`), summing to 1."""
        return smooth_gates(self.gate(self.gate_features(inputs), training=training).expert_weight, self.gate_smoothing)

    def call(self, inputs, training=False):
        inputs = self._inputs(inputs)
        routing = self.gate(self.gate_features(inputs), training=training)
        if training and routing.aux_losses:
            self.add_loss(sum(routing.aux_losses.values()))
        gates = smooth_gates(routing.expert_weight, self.gate_smoothing)  # [b, e]
        if training and self.expert_dropout:
            gates = drop_experts(gates, self.expert_dropout, self.seed_generator)
        outputs = [expert(inputs[i], training=training) for expert, i in zip(self.experts, self.expert_inputs)]
        shapes = {tuple(o.shape[1:]) for o in outputs}
        if len(shapes) != 1:
            raise ValueError(f"Every expert must output the same shape; received output shapes {sorted(shapes)}.")
        stacked = ops.stack([ops.cast(o, "float32") for o in outputs], axis=1)  # [b, e, ...]
        flat = ops.reshape(stacked, (-1, self.num_experts, _features(stacked[:, 0])))  # [b, e, d]
        if self.combination == "geometric" and len(stacked.shape) != 3:
            raise ValueError(f"`combination='geometric'` needs expert outputs of shape [b, classes]; received {tuple(stacked.shape)}.")
        mixed = combine_expert_outputs(flat, gates, self.combination)
        prediction = ops.reshape(mixed, (-1,) + tuple(stacked.shape[2:]))
        if not self.return_expert_outputs:
            return prediction
        return {"prediction": prediction, "expert_outputs": flat, "gate_weights": gates}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "experts": [keras.saving.serialize_keras_object(e) for e in self.experts],
                "expert_inputs": self.expert_inputs,
                "gate_network": None if self.gate_network is None else keras.saving.serialize_keras_object(self.gate_network),
                "gate": keras.saving.serialize_keras_object(self.gate),
                "return_expert_outputs": self.return_expert_outputs,
                "combination": self.combination,
                "gate_smoothing": self.gate_smoothing,
                "expert_dropout": self.expert_dropout,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["experts"] = [keras.saving.deserialize_keras_object(e) for e in config["experts"]]
        if config.get("gate_network") is not None:
            config["gate_network"] = keras.saving.deserialize_keras_object(config["gate_network"])
        if isinstance(config.get("gate"), dict) and "module" in config["gate"]:
            config["gate"] = keras.saving.deserialize_keras_object(config["gate"])
        return cls(**config)


def _features(x):
    """Static number of features per example (every axis after the batch axis must be known)."""
    shape = tuple(x.shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"`MixtureOfModels` needs inputs and expert outputs with known non-batch axes. Received shape {x.shape}")
    return int(math.prod(shape))


def _as_layer(value, name):
    if not isinstance(value, keras.layers.Layer):
        raise ValueError(f"`{name}` must hold Keras layers or models. Received: {value!r}")
    return value
