"""Task models for paired image + text classification: a shared sparse transformer (forms 1 and 2)
and a mixture over whole expert models (form 3).
"""

import keras
import keras_hub
from keras import ops

from keras_moe.experts.model_mixture import MixtureOfModels
from keras_moe.losses.combination import COMBINATIONS
from keras_moe.losses.mixture_loss import MixtureOfExpertsLoss, SeparateExpertsAndGateLoss, pack_mixture
from keras_moe.models.classifier_mixin import ClassifierMixin
from keras_moe.models.multimodal.layers import IMAGE, TEXT, image_augmentation_layers
from keras_moe.models.multimodal.multimodal_backbone import MultimodalMoEBackbone
from keras_moe.models.multimodal.preprocessor import MultimodalClassifierPreprocessor
from keras_moe.utils.validation import check_choice, check_positive_int

INPUT_OF_MODALITY = {"image": "images", "text": "token_ids"}
OBJECTIVES = ("likelihood", "per_expert", "separate")
_EPSILON = 1e-7


def _masked_mean(hidden, mask):
    mask = ops.cast(mask, hidden.dtype)[:, :, None]
    return ops.sum(hidden * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="keras_moe")
class MultimodalMoEClassifier(ClassifierMixin, keras_hub.models.Task):
    """Classifies (image, name) pairs with a `MultimodalMoEBackbone`.

    Each modality's tokens are mean-pooled separately (after modality dropout), the pooled vectors
    are concatenated and a linear head gives the logits (equivalently: the sum of one linear head
    per modality, a product of per-modality experts).

    Args:
        backbone: a `MultimodalMoEBackbone`.
        num_classes: int. dropout: float, before the head.
        class_names: optional list of `num_classes` strings.
        preprocessor: optional `MultimodalClassifierPreprocessor` (then `fit` takes raw images and names).

    Inputs: the backbone's. Output: logits `[b, num_classes]`.
    """

    backbone_cls = MultimodalMoEBackbone
    preprocessor_cls = MultimodalClassifierPreprocessor

    def __init__(self, backbone, num_classes, dropout=0.0, class_names=None, preprocessor=None, **kwargs):
        check_positive_int("num_classes", num_classes)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.output_dropout = keras.layers.Dropout(dropout, dtype=backbone.dtype_policy, name="output_dropout")
        self.output_dense = keras.layers.Dense(num_classes, dtype=backbone.dtype_policy, name="logits")
        # === Functional Model ===
        inputs = backbone.input
        outputs = backbone(inputs)
        hidden, mask = outputs["sequence_output"], outputs["padding_mask"]
        modality_ids = ops.convert_to_numpy(backbone.modality_ids())
        pooled = []
        for modality in (IMAGE, TEXT):
            positions = [i for i, m in enumerate(modality_ids) if m == modality]
            if positions:
                start, stop = positions[0], positions[-1] + 1
                pooled.append(_masked_mean(hidden[:, start:stop], mask[:, start:stop]))
        pooled = pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)
        logits = self.output_dense(self.output_dropout(pooled))
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        # === Config ===
        self.num_classes = num_classes
        self.dropout = dropout
        self.class_names = class_names

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "dropout": self.dropout, "class_names": self.class_names})
        return config


@keras.saving.register_keras_serializable(package="keras_moe")
class MultimodalMixtureClassifier(ClassifierMixin, keras_hub.models.Task):
    """A mixture over whole expert models: a text model, an image model and a gate that sees both.

    Each expert is any Keras model that maps its modality's input (`images [b, H, W, 3]` or
    `token_ids [b, s]`) to class probabilities `[b, c]`. `gate_network` (any Keras layer taking
    `[images, token_ids]`, default `MultimodalGateNetwork`) feeds a softmax gate (`DenseGate`)
    that gives per-example expert weights `g [b, e]` (they sum to 1; `gate_weights(x)` reads them).
    The prediction is the mixture `p(y | x) = sum_e g_e p_e(y | x)` (`combination="arithmetic"`) or
    the gated product of experts `p(y | x) ∝ prod_e p_e(y | x) ** g_e` (`combination="geometric"`,
    Hinton 2002; `combine_expert_outputs`); the model outputs its log, which works as logits for
    `SparseCategoricalCrossentropy(from_logits=True)`.

    Outputs (one forward pass gives all three): `{"logits": [b, c]` (the log of the combined
    probabilities, logits for `SparseCategoricalCrossentropy(from_logits=True)`),
    `"expert_probabilities": [b, e, c]`, `"gate_weights": [b, e]}` (experts in the order image,
    text; with one expert `e = 1` and the weight is 1).

    Objectives (`objective`, used by `compile(loss="auto")`, the default):
    - `"likelihood"`: cross-entropy of the combined output, e.g. `-log sum_e g_e p_e(y)` (Jacobs,
      Jordan, Nowlan & Hinton 1991, eq. 1.3 for classification; the experts cooperate through the gate);
    - `"per_expert"`: `sum_e g_e * CE(y, p_e)` (their eq. 1.2, `MixtureOfExpertsLoss`): each expert
      is judged on its own prediction, so experts compete for examples;
    - `"separate"`: `sum_e CE(y, p_e) + CE(y, combine(stop_gradient(p), g))`
      (`SeparateExpertsAndGateLoss`): every expert is trained on its own cross-entropy, exactly as
      it would be trained alone, and the gate only learns how to weight their fixed predictions.
      When one expert fits the training set much faster (here the name expert), the first two
      objectives let the gate hand it every example and starve the other expert; this one cannot.
    The objective's loss is computed from the same forward pass as the predictions (`compute_loss`
    reads the expert probabilities and gate weights of the model's outputs). A loss passed to
    `compile` explicitly replaces the objective and is applied to `"logits"`; metrics (default:
    accuracy) are computed on `"logits"`.

    With a single expert there is no gate: the model is that expert alone (the single-modality
    baselines of the benchmark use this, so they train through the same code).

    Args:
        experts: dict `{"image": model, "text": model}` (one or both).
        num_classes: int.
        gate_network: optional Keras layer for the gate's features (default `MultimodalGateNetwork()`).
        gate: router spec of the gate (default `"dense"`; e.g. `{"class_name": "dense", "config":
            {"entropy_loss_weight": 0.05}}` keeps it from collapsing onto the expert that fits the
            training set best).
        objective: `"likelihood"`, `"per_expert"` or `"separate"`.
        combination: `"arithmetic"` (mixture) or `"geometric"` (product of experts).
        gate_smoothing: float in [0, 1), mixes the gate with the uniform distribution (`MixtureOfModels`).
        expert_dropout: float in [0, 1), drops one expert per example with this probability when
            training (`MixtureOfModels`).
        image_size: int, sequence_length: int (the input shapes).
        class_names, preprocessor: as for `MultimodalMoEClassifier`.
    """

    preprocessor_cls = MultimodalClassifierPreprocessor

    def __init__(self, experts, num_classes, gate_network=None, gate="dense", objective="likelihood", combination="arithmetic",
                 gate_smoothing=0.0, expert_dropout=0.0, image_size=32, sequence_length=16, class_names=None, preprocessor=None,
                 **kwargs):
        check_positive_int("num_classes", num_classes)
        check_choice("objective", objective, OBJECTIVES)
        check_choice("combination", combination, COMBINATIONS)
        if isinstance(experts, dict):
            experts = {key: e for key, e in experts.items() if e is not None}  # `text: null` drops an expert
        if not isinstance(experts, dict) or not experts or not set(experts) <= set(INPUT_OF_MODALITY):
            raise ValueError(f"`experts` must be a dict with keys among {sorted(INPUT_OF_MODALITY)}. Received: experts={experts!r}")
        experts = {key: keras.saving.deserialize_keras_object(e) if isinstance(e, dict) else e for key, e in experts.items()}
        if isinstance(gate_network, dict):
            gate_network = keras.saving.deserialize_keras_object(gate_network)
        modalities = [m for m in ("image", "text") if m in experts]
        if objective in ("per_expert", "separate") and len(modalities) < 2:
            raise ValueError(f"The {objective!r} objective needs two experts.")
        self.objective = objective  # read by `compile`, which `Task.__init__` calls
        self.combination = combination
        # === Layers ===
        self.preprocessor = preprocessor
        self.experts = experts
        self.gate_network = None
        self.mixture = None
        # === Functional Model ===
        inputs = {  # all three always, so every model takes the preprocessor's output as is
            "images": keras.Input(shape=(image_size, image_size, 3), name="images"),
            "token_ids": keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input(shape=(sequence_length,), dtype="int32", name="padding_mask"),
        }
        if len(modalities) == 1:
            probabilities = experts[modalities[0]](inputs[INPUT_OF_MODALITY[modalities[0]]])
            expert_probabilities = ops.cast(probabilities, "float32")[:, None, :]
            gate_weights = ops.ones_like(expert_probabilities[:, :, 0])
        else:
            self.gate_network = gate_network if gate_network is not None else MultimodalGateNetwork(name="gate_network")
            self.mixture = MixtureOfModels(
                [experts["image"], experts["text"]], expert_inputs=[0, 1], gate_network=self.gate_network,
                gate=gate, return_expert_outputs=True, combination=combination, gate_smoothing=gate_smoothing,
                expert_dropout=expert_dropout, name="mixture",
            )
            mixed = self.mixture([inputs["images"], inputs["token_ids"]])
            probabilities, expert_probabilities, gate_weights = mixed["prediction"], mixed["expert_outputs"], mixed["gate_weights"]
        logits = ops.log(ops.cast(probabilities, "float32") + _EPSILON)
        outputs = {"logits": logits, "expert_probabilities": expert_probabilities, "gate_weights": gate_weights}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # === Config ===
        self.modalities = modalities
        self.num_classes = num_classes
        self.gate_smoothing = gate_smoothing
        self.expert_dropout = expert_dropout
        self.gate = gate
        self.image_size = image_size
        self.sequence_length = sequence_length
        self.class_names = class_names

    def _mixture_inputs(self, x):
        return [x["images"], x["token_ids"]]

    def gate_weights(self, x):
        """Per-example expert weights `[b, e]` (experts in the order image, text); sum to 1 over `e`."""
        if self.mixture is None:
            return ops.ones((ops.shape(x[INPUT_OF_MODALITY[self.modalities[0]]])[0], 1), "float32")
        return self.mixture.gate_probabilities(self._mixture_inputs(x))

    def compile(self, optimizer="rmsprop", loss="auto", *, metrics="auto", **kwargs):
        """Keras's `compile`; `loss="auto"` is the objective's loss (see the class docstring),
        `metrics="auto"` is accuracy on the logits. Any other `loss` is applied to `"logits"`."""
        self._objective_loss = loss == "auto" and self.objective != "likelihood"
        if loss == "auto":
            loss = {
                "likelihood": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                "per_expert": MixtureOfExpertsLoss("sparse_categorical_crossentropy"),
                "separate": SeparateExpertsAndGateLoss(self.combination),
            }[self.objective]
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss on this forward pass's outputs: the packed expert probabilities and
        gate weights for the objective's loss, else the logits."""
        if getattr(self, "_objective_loss", False):
            y_pred = pack_mixture(y_pred["expert_probabilities"], y_pred["gate_weights"])
        else:
            y_pred = y_pred["logits"]
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred["logits"], sample_weight=sample_weight)

    def get_config(self):
        return {
            "experts": {key: keras.saving.serialize_keras_object(e) for key, e in self.experts.items()},
            "num_classes": self.num_classes,
            "gate_network": None if self.gate_network is None else keras.saving.serialize_keras_object(self.gate_network),
            "gate": self.gate,
            "objective": self.objective,
            "combination": self.combination,
            "gate_smoothing": self.gate_smoothing,
            "expert_dropout": self.expert_dropout,
            "image_size": self.image_size,
            "sequence_length": self.sequence_length,
            "class_names": self.class_names,
            "preprocessor": keras.layers.serialize(self.preprocessor),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("preprocessor"), dict):
            config["preprocessor"] = keras.layers.deserialize(config["preprocessor"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_moe")
class MultimodalGateNetwork(keras.layers.Layer):
    """The gate's view of both inputs: a tiny conv net on the image, mean token embeddings of the
    name, concatenated and passed through one ReLU layer: `[images, token_ids] -> [b, hidden_dim]`.

    Args:
        vocabulary_size: int. hidden_dim: int. filters: int, conv channels. dropout: float.
    """

    def __init__(self, vocabulary_size=4096, hidden_dim=32, filters=16, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.filters = check_positive_int("filters", filters)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        self.dropout = float(dropout)
        self.conv = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name="conv")
        self.embedding = keras.layers.Embedding(vocabulary_size, hidden_dim, name="embedding")
        self.hidden = keras.layers.Dense(hidden_dim, activation="relu", name="hidden")
        self.dropout_layer = keras.layers.Dropout(self.dropout)

    def build(self, input_shape):
        image_shape, text_shape = input_shape
        self.conv.build(image_shape)
        self.embedding.build(text_shape)
        self.hidden.build((None, self.filters + self.hidden_dim))

    def call(self, inputs, training=False):
        images, token_ids = inputs
        image = ops.mean(self.conv(images), axis=(1, 2))
        mask = ops.cast(ops.not_equal(token_ids, 0), "float32")[:, :, None]
        text = ops.sum(self.embedding(token_ids) * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
        return self.dropout_layer(self.hidden(ops.concatenate([image, text], axis=-1)), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary_size": self.vocabulary_size, "hidden_dim": self.hidden_dim, "filters": self.filters,
                       "dropout": self.dropout})
        return config


def image_expert(image_size=32, num_classes=9, filters=(32, 64, 128), dropout=0.3, translation=0.1, name="image_expert"):
    """A small CNN image expert: `[b, image_size, image_size, 3]` in [0, 1] -> probabilities `[b, num_classes]`.

    Random horizontal flips and translations (filled with white) when training; 3x3 ReLU
    convolutions with 2x2 max pooling per entry of `filters`; global average pooling; dropout; softmax.
    """
    images = keras.Input((image_size, image_size, 3), name="images")
    hidden = images
    for augmenter in image_augmentation_layers(translation):
        hidden = augmenter(hidden)
    for width in filters:
        hidden = keras.layers.Conv2D(int(width), 3, padding="same", activation="relu")(hidden)
        hidden = keras.layers.MaxPooling2D()(hidden)
    hidden = keras.layers.Dropout(dropout)(keras.layers.GlobalAveragePooling2D()(hidden))
    return keras.Model(images, keras.layers.Dense(num_classes, activation="softmax")(hidden), name=name)


def text_expert(vocabulary_size, sequence_length=16, num_classes=9, hidden_dim=64, dropout=0.3, name="text_expert"):
    """A bag-of-embeddings text expert: token ids `[b, s]` (0 = padding) -> probabilities `[b, num_classes]`.

    Token embeddings (whole tokens dropped with `dropout / 2` when training), masked mean, dropout, softmax.
    """
    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    hidden = keras.layers.Embedding(vocabulary_size, hidden_dim, mask_zero=True)(token_ids)
    hidden = keras.layers.SpatialDropout1D(dropout / 2)(hidden)
    hidden = keras.layers.Dropout(dropout)(keras.layers.GlobalAveragePooling1D()(hidden))
    return keras.Model(token_ids, keras.layers.Dense(num_classes, activation="softmax")(hidden), name=name)
