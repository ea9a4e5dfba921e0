"""Serving exported SavedModels over TF Serving's REST and gRPC APIs (`keras-moe serve`)."""

from keras_moe.serving.rest import make_response, parse_request
from keras_moe.serving.specs import InputSpec, RequestError
from keras_moe.serving.versions import ModelVersions
