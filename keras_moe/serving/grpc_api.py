"""TF Serving's gRPC API on the same models: `keras-moe serve ... --grpc-port 8500`.

Implemented with the official `tensorflow-serving-api` protos and service definitions:
    tensorflow.serving.PredictionService/Predict            inputs: {name: TensorProto}, output_filter
    tensorflow.serving.PredictionService/GetModelMetadata   metadata_field ["signature_def"]
    tensorflow.serving.ModelService/GetModelStatus
The model spec's `version` picks a version (default: the newest served), `signature_name` a
signature (default `serving_default`); version labels are not supported. Versions behave exactly as
over REST (`keras_moe.serving.versions`). Errors: INVALID_ARGUMENT for a bad request, NOT_FOUND for
an unknown model or a version that is not served, UNAVAILABLE when no version is (or the asked
version is still loading). `Classify`, `Regress`, `MultiInference` and
`ModelService/HandleReloadConfigRequest` (loading and unloading models) answer UNIMPLEMENTED.
"""

import concurrent.futures
import logging

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_moe.serving.specs import GRPC_CODES, RequestError, check_arrays, check_signature_name, shown
from keras_moe.serving.workers import ModelFailure

log = logging.getLogger("keras_moe.serving")


def _answer(context, method, function, request):
    try:
        return function(request)
    except RequestError as error:
        code, message = getattr(grpc.StatusCode, GRPC_CODES.get(error.status, "INVALID_ARGUMENT")), str(error)
        log.warning("gRPC %s -> %s: %s", method, code.name, message)
    except ModelFailure as error:
        code, message = grpc.StatusCode.INTERNAL, str(error)
    context.abort(code, message)


def _not_offered(context, method, instead):
    """grpc's generated servicer raises (and logs a traceback) for methods it lacks; answer plainly."""
    log.warning("gRPC %s -> UNIMPLEMENTED", method)
    context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not offered by this server; {instead}")


class _Models:
    def __init__(self, models, max_batch_size, max_elements):
        self.models, self.max_batch_size, self.max_elements = models, max_batch_size, max_elements

    def resolve(self, spec):
        """`(model name, ModelVersions, version or None)` for a `ModelSpec`."""
        model = self.models.get(spec.name)
        if model is None:
            raise RequestError(f"Model {shown(spec.name)} is not served here; this server serves {sorted(self.models)}.", 404)
        if spec.HasField("version_label"):
            raise RequestError(f"Version labels are not supported; received label {shown(spec.version_label)}. Ask for a version number.")
        return spec.name, model, (spec.version.value if spec.HasField("version") else None)

    def to_array(self, name, proto):
        shape = [d.size for d in proto.tensor_shape.dim]
        if proto.tensor_shape.unknown_rank or any(d < 0 for d in shape):
            raise RequestError(f"Input {shown(name)} must have a known shape; received {shape}.")
        if int(np.prod(shape, dtype=np.float64)) > self.max_elements:
            raise RequestError(f"Input {shown(name)} of shape {shape} has more than {self.max_elements} elements.", 413)
        try:
            return tf.make_ndarray(proto)
        except (TypeError, ValueError) as error:
            raise RequestError(f"Input {shown(name)} is not a valid tensor: {error}") from None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, models):
        self.models = models

    def Predict(self, request, context):
        return _answer(context, "Predict", self._predict, request)

    def GetModelMetadata(self, request, context):
        return _answer(context, "GetModelMetadata", self._metadata, request)

    def Classify(self, request, context):
        _not_offered(context, "Classify", "use Predict (the models export predict signatures).")

    def Regress(self, request, context):
        _not_offered(context, "Regress", "use Predict (the models export predict signatures).")

    def MultiInference(self, request, context):
        _not_offered(context, "MultiInference", "use Predict (the models export predict signatures).")

    def _predict(self, request):
        name, model, version = self.models.resolve(request.model_spec)
        signature_name = request.model_spec.signature_name or "serving_default"
        with model.use(version) as worker:
            specs = check_signature_name(signature_name, worker.input_specs)
            inputs = {key: self.models.to_array(key, proto) for key, proto in request.inputs.items()}
            check_arrays(inputs, specs, self.models.max_batch_size)
            wanted = list(request.output_filter) or None
            unknown = set(wanted or []) - set(worker.signatures[signature_name]["outputs"])
            if unknown:
                raise RequestError(f"Unknown output_filter names {shown(sorted(unknown))}; "
                                   f"{signature_name!r} has {sorted(worker.signatures[signature_name]['outputs'])}.")
            outputs = worker.predict(signature_name, inputs, wanted).result()
        response = predict_pb2.PredictResponse()
        response.model_spec.name, response.model_spec.signature_name = name, signature_name
        response.model_spec.version.value = worker.version
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def _metadata(self, request):
        name, model, version = self.models.resolve(request.model_spec)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise RequestError(f'metadata_field must be ["signature_def"] (the only metadata there is); received {shown(fields)}.')
        with model.use(version) as worker:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = name
            response.model_spec.version.value = worker.version
            definitions = get_model_metadata_pb2.SignatureDefMap.FromString(worker.signature_def_map)
            response.metadata["signature_def"].Pack(definitions)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, models):
        self.models = models

    def GetModelStatus(self, request, context):
        return _answer(context, "GetModelStatus", self._status, request)

    def HandleReloadConfigRequest(self, request, context):
        _not_offered(context, "HandleReloadConfigRequest", "models load from the served folder, never over the network.")

    def _status(self, request):
        _, model, version = self.models.resolve(request.model_spec)
        ready, entries, why = model.status(version)
        if not ready:
            raise RequestError(why, 503)
        response = get_model_status_pb2.GetModelStatusResponse()
        for entry in entries:
            status = response.model_version_status.add()
            status.version = int(entry["version"])
            status.state = get_model_status_pb2.ModelVersionStatus.State.Value(entry["state"])
            status.status.error_code = 0 if entry["status"]["error_code"] == "OK" else 2  # tensorflow.error.Code UNKNOWN
            status.status.error_message = entry["status"]["error_message"]
        return response


def start_grpc_server(models, host, port, max_batch_size=256, max_message_bytes=8 * 1024 * 1024, threads=16):
    """Starts a gRPC server for `models` (`{name: ModelVersions}`) on `host:port`; returns it."""
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", max_message_bytes), ("grpc.so_reuseport", 0)],
    )
    shared = _Models(models, max_batch_size, max_elements=max_message_bytes)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(shared), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(shared), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"Could not listen for gRPC on {address}: {error}") from None
    server.start()
    return server
