"""The signature registry: lookup by class, clear errors, and the JAX-backend refusal."""

import keras
import pytest

from keras_moe.export import export_saved_model, register_signatures, signatures_for
from keras_moe.export import signatures as registry


class Plain(keras.Model):
    pass


def test_unregistered_model_names_the_registered_ones():
    with pytest.raises(ValueError, match="No serving signatures are registered for Plain.*MoECausalLM"):
        signatures_for(Plain())


def test_builder_must_provide_serving_default():
    class Odd(keras.Model):
        pass

    register_signatures(Odd)(lambda model: {"other": None})
    try:
        with pytest.raises(ValueError, match="lack 'serving_default'"):
            signatures_for(Odd())
    finally:
        registry._BUILDERS.pop(Odd)  # leave the global registry as it was


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="the refusal is for other backends")
def test_export_needs_tensorflow(tmp_path):
    from tests.export.tiny import tiny_classifier

    with pytest.raises(RuntimeError, match="TensorFlow backend.*" + keras.backend.backend()):
        export_saved_model(tiny_classifier(), str(tmp_path), "m")
