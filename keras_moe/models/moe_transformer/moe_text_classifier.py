"""A Switch-Transformer-style encoder classifier: bidirectional MoE encoder, masked mean pool, softmax head."""

import keras
import keras_hub
from keras import ops

from keras_moe.models.classifier_mixin import ClassifierMixin
from keras_moe.models.moe_transformer.moe_text_classifier_preprocessor import MoETextClassifierPreprocessor
from keras_moe.models.moe_transformer.moe_transformer_backbone import MoETransformerBackbone
from keras_moe.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_moe")
class MoETextClassifier(ClassifierMixin, keras_hub.models.Task):
    """Classifies token sequences with an encoder `MoETransformerBackbone` (`causal=False`).

    Args:
        backbone: an `MoETransformerBackbone`, usually with `causal=False`.
        num_classes: int.
        dropout: float, dropout before the head.
        activation: `None` for logits (default) or `"softmax"` for probabilities.
        class_names: optional list of `num_classes` strings, the label of each class (saved with
            the model; the SavedModel export returns them as labels).
        preprocessor: optional `MoETextClassifierPreprocessor`; with one, `fit`/`predict` take
            raw strings.

    Inputs: `{"token_ids": int [b, s], "padding_mask": [b, s]}`. Output: `[b, num_classes]`.
    """

    backbone_cls = MoETransformerBackbone
    preprocessor_cls = MoETextClassifierPreprocessor

    def __init__(self, backbone, num_classes, dropout=0.0, activation=None, class_names=None, preprocessor=None, **kwargs):
        check_positive_int("num_classes", num_classes)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.output_dropout = keras.layers.Dropout(dropout, dtype=backbone.dtype_policy, name="output_dropout")
        self.output_dense = keras.layers.Dense(num_classes, activation=activation, dtype=backbone.dtype_policy, name="logits")
        # === Functional Model ===
        inputs = backbone.input
        hidden = backbone(inputs)
        mask = ops.cast(inputs["padding_mask"], hidden.dtype)[:, :, None]
        pooled = ops.sum(hidden * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
        outputs = self.output_dense(self.output_dropout(pooled))
        self.activation = activation  # `compile(loss="auto")`, which `Task.__init__` calls, reads it
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # === Config ===
        self.num_classes = num_classes
        self.dropout = dropout
        self.class_names = class_names

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "dropout": self.dropout, "activation": self.activation,
                       "class_names": self.class_names})
        return config
