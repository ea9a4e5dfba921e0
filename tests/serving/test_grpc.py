"""TF Serving's gRPC API (issue 14), called with the official `tensorflow-serving-api` stubs, unchanged."""

import grpc
import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="serving exports need TensorFlow")

TEXTS = ["the cat sat", "a dog ran"]


@pytest.fixture(scope="module")
def stubs(server):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{server['grpc_port']}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def predict_request(texts=TEXTS, name="fortunes", version=None, signature=None, dtype=None):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if signature is not None:
        request.model_spec.signature_name = signature
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts, dtype=dtype))
    return request


def test_predict_matches_the_saved_model(server, stubs):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    response = stubs[0].Predict(predict_request(version=1), timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value, response.model_spec.signature_name) == (
        "fortunes", 1, "serving_default")
    expected = tf.saved_model.load(server["first"]).signatures["serving_default"](text=tf.constant(TEXTS))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"].numpy(), atol=1e-6)
    assert list(tf.make_ndarray(response.outputs["labels"])) == list(expected["labels"].numpy())


def test_predict_newest_version_output_filter_and_routing_signature(stubs):
    import tensorflow as tf

    request = predict_request()
    request.output_filter.append("class_ids")
    response = stubs[0].Predict(request, timeout=30)
    assert list(response.outputs) == ["class_ids"] and response.model_spec.version.value >= 1
    routing = stubs[0].Predict(predict_request(signature="routing"), timeout=30)
    assert tf.make_ndarray(routing.outputs["moe_0_expert_ids"]).shape == (2, 8, 2)


def test_model_metadata_holds_the_signature_defs(stubs):
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "fortunes"
    request.model_spec.version.value = 1
    request.metadata_field.append("signature_def")
    response = stubs[0].GetModelMetadata(request, timeout=30)
    definitions = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(definitions)
    assert set(definitions.signature_def) == {"serving_default", "routing"}
    default = definitions.signature_def["serving_default"]
    assert list(default.inputs) == ["text"] and default.inputs["text"].dtype == 7  # DT_STRING
    assert default.method_name == "tensorflow/serving/predict"


def test_model_status(stubs):
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "fortunes"
    request.model_spec.version.value = 1
    (status,) = stubs[1].GetModelStatus(request, timeout=30).model_version_status
    assert (status.version, status.state, status.status.error_code) == (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)


def _with(request, change):
    change(request)
    return request


BAD = [
    ("unknown model", lambda: predict_request(name="nope"), "NOT_FOUND", "Model 'nope' is not served here"),
    ("missing version", lambda: predict_request(version=99), "NOT_FOUND", "Version 99 of model 'fortunes' is not available"),
    ("unknown signature", lambda: predict_request(signature="nope"), "INVALID_ARGUMENT", "Unknown signature_name 'nope'"),
    ("wrong input name", lambda: _with(predict_request(), lambda r: r.inputs["txt"].CopyFrom(r.inputs.pop("text"))),
     "INVALID_ARGUMENT", r"inputs \['txt'\]; this signature takes \['text'\]"),
    ("wrong dtype", lambda: predict_request(texts=[1.0, 2.0]), "INVALID_ARGUMENT", "must have dtype string; received float32"),
    ("wrong rank", lambda: predict_request(texts=[["a", "b"]]), "INVALID_ARGUMENT", r"must have shape \['batch'\]"),
    ("empty string", lambda: predict_request(texts=["ok", ""]), "INVALID_ARGUMENT", "non-empty string"),
    ("invalid UTF-8", lambda: predict_request(texts=[b"\xff\xfe"]), "INVALID_ARGUMENT", "valid UTF-8"),
    ("too many instances", lambda: predict_request(texts=["a"] * 17), "INVALID_ARGUMENT", "Too many instances: 17"),
    ("huge claimed shape",
     lambda: _with(predict_request(texts=["a"]), lambda r: setattr(r.inputs["text"].tensor_shape.dim[0], "size", 10**12)),
     "INVALID_ARGUMENT", "has more than"),
    ("version label", lambda: _with(predict_request(), lambda r: setattr(r.model_spec, "version_label", "stable")),
     "INVALID_ARGUMENT", "Version labels are not supported"),
    ("unknown output", lambda: _with(predict_request(), lambda r: r.output_filter.append("logits")),
     "INVALID_ARGUMENT", r"Unknown output_filter names \['logits'\]"),
]


@pytest.mark.parametrize("case, make, code, message", BAD, ids=[c[0] for c in BAD])
def test_bad_requests_get_the_tf_serving_error_codes(server, stubs, case, make, code, message):
    import re

    with pytest.raises(grpc.RpcError) as error:
        stubs[0].Predict(make(), timeout=30)
    assert error.value.code().name == code and re.search(message, error.value.details()), error.value.details()
    assert not re.search(r"\b\w*(Error|Exception)\b", error.value.details())
    assert stubs[0].Predict(predict_request(), timeout=30).outputs  # still serving
    assert server["process"].poll() is None


def test_metadata_needs_signature_def_and_reload_config_is_not_offered(server, stubs):
    from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, model_management_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "fortunes"
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].GetModelMetadata(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "signature_def" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:  # loading/unloading models over the network: not offered
        stubs[1].HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=30)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED and "never over the network" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].Classify(classification_pb2.ClassificationRequest(), timeout=30)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED and "use Predict" in error.value.details()
    with open(server["log"]) as handle:
        assert "Traceback" not in handle.read()
