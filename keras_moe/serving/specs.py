"""What a signature takes (`InputSpec`), the client-error type, and the checks REST and gRPC share.

`RequestError(message, status)` is every client error: the REST server answers `status` with
`{"error": message}`, the gRPC server the matching code (`GRPC_CODES`). Messages name the bad value
(cut by `shown` so a huge value cannot make a huge answer) and never a Python exception type.
"""

import dataclasses

import numpy as np

# HTTP status -> gRPC status code name, as TF Serving maps its errors.
GRPC_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "INVALID_ARGUMENT", 503: "UNAVAILABLE"}


class RequestError(ValueError):
    """A client error (or a model that is not available): the server answers 4xx/503 with this message."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str  # numpy dtype name, or "string"
    shape: tuple  # with None for free dimensions; shape[0] is the batch


def shown(value, limit=60):
    """`repr(value)` cut to `limit` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_signature_name(signature_name, signatures):
    if not isinstance(signature_name, str):
        raise RequestError(
            f"signature_name must be a string; received {type(signature_name).__name__} {shown(signature_name)}."
        )
    if signature_name not in signatures:
        raise RequestError(f"Unknown signature_name {shown(signature_name)}; this model has {sorted(signatures)}.")
    return signatures[signature_name]


def check_shape(name, shape, expected):
    if len(shape) != len(expected) or any(e is not None and e != s for s, e in zip(shape[1:], expected[1:])):
        wanted = ["batch"] + [d if d is not None else "any" for d in expected[1:]]
        raise RequestError(f"Input {name!r} must have shape {wanted}; received shape {list(shape)}.")


def check_batch(sizes, max_batch_size):
    """`sizes` `{input name: items}` -> the batch size, or `RequestError` (400, or 413 when too large)."""
    if len(set(sizes.values())) != 1:
        raise RequestError(f"Every input needs the same number of items; received {sizes}.")
    batch = next(iter(sizes.values()))
    if batch == 0:
        raise RequestError("The request holds no instances.")
    if batch > max_batch_size:
        raise RequestError(f"Too many instances: {batch} > the server's limit of {max_batch_size} per request.", status=413)
    return batch


def check_arrays(inputs, specs, max_batch_size):
    """Typed arrays (gRPC `TensorProto`s) against a signature: names, dtypes, shapes, batch size."""
    if set(inputs) != set(specs):
        raise RequestError(f"The request has inputs {sorted(inputs)}; this signature takes {sorted(specs)}.")
    for name, array in inputs.items():
        spec = specs[name]
        is_string = array.dtype == object or array.dtype.kind == "S"
        if (spec.dtype == "string") != is_string or (not is_string and array.dtype != np.dtype(spec.dtype)):
            got = "string" if is_string else array.dtype.name
            raise RequestError(f"Input {name!r} must have dtype {spec.dtype}; received {got}.")
        check_shape(name, array.shape, spec.shape)
    return check_batch({name: array.shape[0] for name, array in inputs.items()}, max_batch_size)
