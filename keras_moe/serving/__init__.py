"""Serving exported SavedModels over TF Serving's REST API (`keras-moe serve`), built on KServe."""

from keras_moe.serving.rest import RequestError, make_response, parse_request
from keras_moe.serving.servable import LoadedVersion, VersionedModel
