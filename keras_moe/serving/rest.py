"""TensorFlow Serving's REST predict format: JSON request -> tensors, tensors -> JSON response.

Row format: `{"signature_name": ..., "instances": [...]}` -> `{"predictions": [...]}`; each instance
is a bare value when the signature has one input, else `{input name: value}`. Columnar format:
`{"inputs": {name: [...]}}` (or a bare list for one input) -> `{"outputs": ...}`. Binary strings
travel as `{"b64": "..."}`, as in TF Serving. See
https://www.tensorflow.org/tfx/serving/api_rest#predict_api.

Every problem raises `RequestError` with a message that names the input, item and value.
"""

import base64
import binascii
import dataclasses

import numpy as np

from keras_moe.serving.specs import RequestError, check_batch, check_shape, check_signature_name, shown

REQUEST_KEYS = {"signature_name", "instances", "inputs"}


@dataclasses.dataclass
class Request:
    signature_name: str
    columnar: bool
    inputs: dict  # name -> numpy array (object arrays of bytes for strings)
    batch_size: int


def parse_request(body, signatures, max_batch_size):
    """Validates a decoded JSON `body` against `signatures` (`{name: {input name: InputSpec}}`)."""
    if not isinstance(body, dict):
        raise RequestError(f"The request body must be a JSON object; received {type(body).__name__}.")
    unknown = set(body) - REQUEST_KEYS
    if unknown:
        raise RequestError(f"Unknown request keys {shown(sorted(unknown))}; expected {sorted(REQUEST_KEYS)}.")
    if ("instances" in body) == ("inputs" in body):
        raise RequestError('The request must hold exactly one of "instances" (row format) or "inputs" (columnar format).')
    signature_name = body.get("signature_name", "serving_default")
    specs = check_signature_name(signature_name, signatures)
    if "instances" in body:
        columns = _rows_to_columns(body["instances"], specs)
    else:
        columns = _columns(body["inputs"], specs)
    batch = check_batch({name: len(values) for name, values in columns.items()}, max_batch_size)
    inputs = {name: _to_array(name, values, specs[name]) for name, values in columns.items()}
    return Request(signature_name, "inputs" in body, inputs, batch)


def _rows_to_columns(instances, specs):
    if not isinstance(instances, list):
        raise RequestError(f'"instances" must be a list; received {type(instances).__name__}.')
    names = sorted(specs)
    columns = {name: [] for name in names}
    for i, instance in enumerate(instances):
        if len(names) == 1 and not (isinstance(instance, dict) and set(instance) == set(names)):
            if isinstance(instance, dict) and "b64" not in instance:
                raise RequestError(f"Instance {i} has inputs {shown(sorted(instance))}; this signature takes {names}.")
            columns[names[0]].append(instance)
            continue
        if not isinstance(instance, dict) or set(instance) != set(names):
            got = shown(sorted(instance)) if isinstance(instance, dict) else type(instance).__name__
            raise RequestError(f"Instance {i} must be an object with the inputs {names}; received {got}.")
        for name in names:
            columns[name].append(instance[name])
    return columns


def _columns(inputs, specs):
    names = sorted(specs)
    if isinstance(inputs, dict) and not (len(names) == 1 and "b64" in inputs):
        if set(inputs) != set(names):
            raise RequestError(f'"inputs" has {shown(sorted(inputs))}; this signature takes {names}.')
        columns = inputs
    elif len(names) == 1:
        columns = {names[0]: inputs}
    else:
        raise RequestError(f'"inputs" must be an object with the inputs {names}.')
    for name, values in columns.items():
        if not isinstance(values, list):
            raise RequestError(f"Input {name!r} must be a list with one item per instance; received {type(values).__name__}.")
    return columns


def _to_array(name, values, spec):
    if spec.dtype == "string":
        array = np.array([_to_bytes(name, i, value) for i, value in enumerate(values)], dtype=object)
        if array.ndim != len(spec.shape):
            raise RequestError(f"Input {name!r} must have rank {len(spec.shape)} (shape {list(spec.shape)}); received rank {array.ndim}.")
        return array
    try:
        array = np.asarray(values)
    except ValueError as error:  # ragged nesting
        raise RequestError(f"Input {name!r} is not a regular array: {error}") from None
    if array.dtype.kind not in "biuf" or array.dtype == bool and spec.dtype != "bool":
        raise RequestError(f"Input {name!r} must hold numbers of dtype {spec.dtype}; received {array.dtype.name} values.")
    if np.dtype(spec.dtype).kind in "iu" and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise RequestError(f"Input {name!r} has dtype {spec.dtype}; received non-integer numbers.")
    check_shape(name, array.shape, spec.shape)
    if np.dtype(spec.dtype).kind in "iu":
        info = np.iinfo(spec.dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise RequestError(f"Input {name!r} has dtype {spec.dtype}; values must lie in [{info.min}, {info.max}].")
    return array.astype(spec.dtype)


def _to_bytes(name, index, value):
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            data = base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            raise RequestError(f"Input {name!r} item {index}: invalid base64 in 'b64'.") from None
        if not name.endswith("_bytes"):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise RequestError(f"Input {name!r} item {index} is not valid UTF-8 text ({error.reason} at byte {error.start}).") from None
    elif isinstance(value, str):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            raise RequestError(f"Input {name!r} item {index} is not valid Unicode text.") from None
    else:
        raise RequestError(
            f'Input {name!r} item {index} must be a string (or {{"b64": ...}}); received {type(value).__name__} {shown(value)}.'
        )
    if not data:
        raise RequestError(f"Input {name!r} item {index} is an empty string.")
    return data


def to_json_value(array):
    """Numpy output -> JSON-compatible nested lists; bytes become text (or `{"b64"}` if not UTF-8)."""
    if array.dtype == object or array.dtype.kind == "S":
        flat = [_bytes_to_json(v) for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def _bytes_to_json(value):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def make_response(request, outputs):
    """`outputs` `{name: numpy [batch, ...]}` -> the TF Serving response for the request's format."""
    names = sorted(outputs)
    if request.columnar:
        values = {name: to_json_value(outputs[name]) for name in names}
        return {"outputs": values[names[0]] if len(names) == 1 else values}
    columns = {name: to_json_value(outputs[name]) for name in names}
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {"predictions": [{name: columns[name][i] for name in names} for i in range(request.batch_size)]}
