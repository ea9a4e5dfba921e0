"""Contract checks every public keras-moe layer must pass (keras-hub's `run_layer_test` idea)."""

import inspect
import os
import tempfile

import keras
import numpy as np


def assert_config_complete(layer):
    """Every `__init__` argument appears in `get_config`, and `from_config` reproduces the config."""
    config = layer.get_config()
    for cls in type(layer).__mro__:
        if cls in (keras.layers.Layer, keras.Model, keras.losses.Loss, object) or "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters
        missing = [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in config]
        assert not missing, f"{type(layer).__name__}.get_config() lacks {missing}"
        break
    clone = type(layer).from_config(config)
    assert _normalise(clone.get_config()) == _normalise(config)
    return clone


def _normalise(config):
    config = dict(config)
    config.pop("name", None)
    return repr(sorted(config.items()))


def assert_keras_round_trip(model, inputs, atol=0.0):
    """`.keras` save/load reproduces the outputs (a tensor or a structure of tensors) exactly."""
    expected = keras.tree.map_structure(keras.ops.convert_to_numpy, model(inputs, training=False))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        restored = keras.models.load_model(path)
    actual = keras.tree.map_structure(keras.ops.convert_to_numpy, restored(inputs, training=False))
    keras.tree.map_structure(lambda a, e: np.testing.assert_allclose(a, e, atol=atol, rtol=0), actual, expected)
    return restored


def assert_saved_model_parity(model, inputs, atol=1e-5):
    """A SavedModel export (TensorFlow backend) reloaded with `tf.saved_model.load` gives the same outputs."""
    import tensorflow as tf

    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    with tempfile.TemporaryDirectory() as tmp:
        model.export(os.path.join(tmp, "export"), verbose=False)
        reloaded = tf.saved_model.load(os.path.join(tmp, "export"))
        actual = reloaded.serve(tf.constant(inputs)).numpy()
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)
