"""What every classifier task shares: `class_names` (saved with the model, returned as labels by the
SavedModel), keras-hub's `compile` defaults (`loss="auto"`, `metrics="auto"`), and compiling again
when a `.keras` file is loaded."""

import keras


class ClassifierMixin:
    """`class_names`: None or `num_classes` non-empty strings (the task sets `num_classes` first).

    `compile(optimizer="rmsprop", loss="auto", metrics="auto", ...)`: `"auto"` loss is sparse
    categorical cross-entropy (`from_logits` unless the task's `activation` is softmax), `"auto"`
    metrics are accuracy; anything else is passed to Keras as given (keras-hub's `TextClassifier`).
    `keras.models.load_model` compiles the model as it was compiled when saved (`compile_from_config`:
    Keras skips a model whose `compile` is its own, with a warning) and restores its optimizer state.
    """

    @property
    def class_names(self):
        return None if self._class_names is None else list(self._class_names)

    @class_names.setter
    def class_names(self, names):
        if names is not None:
            names = list(names)
            if len(names) != self.num_classes or not all(isinstance(n, str) and n for n in names):
                raise ValueError(
                    f"`class_names` must be {self.num_classes} non-empty strings (num_classes={self.num_classes}). "
                    f"Received: class_names={names}"
                )
        self._class_names = None if names is None else tuple(names)

    def compile(self, optimizer="rmsprop", loss="auto", *, metrics="auto", **kwargs):
        if loss == "auto":
            from_logits = getattr(self, "activation", None) != "softmax"
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        """Compiles a loaded model with the saved compile config (`get_compile_config`), then builds the
        optimizer so that its saved variables load (what Keras does for a model without its own `compile`)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)
