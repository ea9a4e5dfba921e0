"""TF Serving's REST request/response format, without a server."""

import base64

import numpy as np
import pytest

from keras_moe.serving.rest import make_response, parse_request
from keras_moe.serving.specs import InputSpec, RequestError

TEXT = {"serving_default": {"text": InputSpec("text", "string", (None,))}}
IMAGE_AND_NAME = {"serving_default": {
    "image": InputSpec("image", "uint8", (None, 2, 2, 3)),
    "name": InputSpec("name", "string", (None,)),
}}


def b64(data):
    return {"b64": base64.b64encode(data).decode()}


def test_row_and_columnar_single_input():
    rows = parse_request({"instances": ["a", "bc"]}, TEXT, 8)
    columns = parse_request({"inputs": {"text": ["a", "bc"]}}, TEXT, 8)
    bare = parse_request({"inputs": ["a", "bc"]}, TEXT, 8)
    named_rows = parse_request({"instances": [{"text": "a"}, {"text": "bc"}]}, TEXT, 8)
    for request in (rows, columns, bare, named_rows):
        assert request.inputs["text"].tolist() == [b"a", b"bc"] and request.batch_size == 2
    assert not rows.columnar and columns.columnar


def test_multi_input_rows_and_b64_strings():
    image = np.arange(12).reshape(2, 2, 3).tolist()
    request = parse_request({"instances": [{"image": image, "name": b64("caf\u00e9".encode())}]}, IMAGE_AND_NAME, 8)
    assert request.inputs["image"].dtype == np.uint8 and request.inputs["image"].shape == (1, 2, 2, 3)
    assert request.inputs["name"].tolist() == ["caf\u00e9".encode()]


def test_responses_in_both_formats():
    outputs = {"labels": np.array([b"a", b"\xff"], dtype=object), "probabilities": np.array([[0.25, 0.75], [1.0, 0.0]])}
    rows = make_response(parse_request({"instances": ["x", "y"]}, TEXT, 8), outputs)
    assert rows == {"predictions": [{"labels": "a", "probabilities": [0.25, 0.75]},
                                    {"labels": {"b64": "/w=="}, "probabilities": [1.0, 0.0]}]}
    columns = make_response(parse_request({"inputs": ["x", "y"]}, TEXT, 8), outputs)
    assert columns["outputs"]["probabilities"] == [[0.25, 0.75], [1.0, 0.0]]
    single = make_response(parse_request({"instances": ["x"]}, TEXT, 8), {"ids": np.array([3])})
    assert single == {"predictions": [3]}


@pytest.mark.parametrize("body, message", [
    ([1, 2], "JSON object"),
    ({"instances": ["a"], "inputs": ["a"]}, "exactly one of"),
    ({}, "exactly one of"),
    ({"instances": ["a"], "extra": 1}, r"Unknown request keys \['extra'\]"),
    ({"instances": ["a"], "signature_name": "nope"}, "Unknown signature_name 'nope'"),
    ({"instances": ["a"], "signature_name": ["serving_default"]}, r"signature_name must be a string; received list \['serving_default'\]"),
    ({"instances": ["a"], "signature_name": {"a": 1}}, r"signature_name must be a string; received dict \{'a': 1\}"),
    ({"instances": "a"}, '"instances" must be a list'),
    ({"instances": []}, "no instances"),
    ({"instances": [""]}, "item 0 is an empty string"),
    ({"instances": ["ok", 5]}, "item 1 must be a string"),
    ({"instances": [b64(b"\xff\xfe")]}, "not valid UTF-8"),
    ({"instances": [{"b64": "%%%"}]}, "invalid base64"),
    ({"instances": ["\ud800"]}, "not valid Unicode"),
    ({"instances": [{"txt": "a"}]}, r"inputs \['txt'\]"),
    ({"inputs": {"txt": ["a"]}}, r"\"inputs\" has \['txt'\]"),
    ({"inputs": {"text": "a"}}, "must be a list"),
])
def test_bad_text_requests_name_the_problem(body, message):
    with pytest.raises(RequestError, match=message) as error:
        parse_request(body, TEXT, 8)
    assert error.value.status == 400


@pytest.mark.parametrize("instance, message", [
    ({"image": [[[0, 0, 0]] * 2] * 2}, r"inputs \['image', 'name'\]"),
    ({"image": [[[0, 0, 0, 0]] * 2] * 2, "name": "x"}, r"shape \['batch', 2, 2, 3\]; received shape \[1, 2, 2, 4\]"),
    ({"image": [[[0.5, 0, 0]] * 2] * 2, "name": "x"}, "non-integer"),
    ({"image": [[[300, 0, 0]] * 2] * 2, "name": "x"}, r"values must lie in \[0, 255\]"),
    ({"image": [[["a", 0, 0]] * 2] * 2, "name": "x"}, "must hold numbers"),
    ({"image": [[[0, 0]], [[0, 0, 0]]], "name": "x"}, "not a regular array|shape"),
])
def test_bad_image_requests_name_the_problem(instance, message):
    with pytest.raises(RequestError, match=message):
        parse_request({"instances": [instance]}, IMAGE_AND_NAME, 8)


def test_batch_limits():
    with pytest.raises(RequestError, match="Too many instances: 9 > the server's limit of 8") as error:
        parse_request({"instances": ["a"] * 9}, TEXT, 8)
    assert error.value.status == 413
    with pytest.raises(RequestError, match="same number of items"):
        parse_request({"inputs": {"image": [[[[0, 0, 0]] * 2] * 2], "name": ["a", "b"]}}, IMAGE_AND_NAME, 8)
