"""Which serving signatures a model type exports: a registry from Keras model class to a builder.

A builder is `builder(model) -> {signature name: tf.function}`; every function has a fixed
`input_signature` of raw inputs (strings, uint8 images), does its preprocessing in the graph with
TensorFlow core / TF Text ops only (what TF Serving's standard build contains), and returns a dict
of named outputs. `"serving_default"` must be one of the names.

    @register_signatures(MyTask)
    def my_task_signatures(model):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def predict(text):
            ...
            return {"probabilities": ..., "labels": ...}
        return {"serving_default": predict}
"""

_BUILDERS = {}


def register_signatures(model_class):
    """Decorator: `builder` makes the signatures of `model_class` instances (and subclasses)."""

    def decorator(builder):
        _BUILDERS[model_class] = builder
        return builder

    return decorator


def signatures_for(model):
    """`{name: tf.function}` for `model`, from the builder of its closest registered class."""
    for cls in type(model).__mro__:
        if cls in _BUILDERS:
            functions = _BUILDERS[cls](model)
            if "serving_default" not in functions:
                raise ValueError(f"The signatures for {cls.__name__} lack 'serving_default': {sorted(functions)}")
            return functions
    raise ValueError(
        f"No serving signatures are registered for {type(model).__name__}; "
        f"registered: {sorted(c.__name__ for c in _BUILDERS)}. Use keras_moe.export.register_signatures."
    )
