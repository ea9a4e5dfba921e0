"""`keras-moe serve` end to end: a real server process on a free loopback port, every route, bad requests."""

import base64
import os
import re
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_moe.export import export_saved_model
from tests.export.tiny import tiny_classifier
from tests.serving.helpers import call, running_server

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="serving exports need TensorFlow")

TEXTS = ["the cat sat", "a dog ran"]
EXCEPTION_NAMES = re.compile(r"\b\w*(Error|Exception)\b")


def local_outputs(path, texts, signature="serving_default"):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    outputs = tf.saved_model.load(path).signatures[signature](text=tf.constant(texts))
    return {k: v.numpy() for k, v in outputs.items()}


def test_status_and_metadata(server):
    assert call(server["base"]) == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    status, metadata = call(server["base"] + "/metadata")
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and set(signatures) == {"serving_default", "routing"}
    assert signatures["serving_default"]["inputs"] == {"text": {"dtype": "string", "shape": [-1]}}
    assert call(server["base"] + "/versions/1")[0] == 200


def test_predict_rows_and_columns_match_the_saved_model(server):
    expected = local_outputs(server["first"], TEXTS)
    status, rows = call(server["base"] + ":predict", {"instances": TEXTS})
    assert status == 200
    np.testing.assert_allclose([p["probabilities"] for p in rows["predictions"]], expected["probabilities"], atol=1e-6)
    assert [p["labels"] for p in rows["predictions"]] == [b.decode() for b in expected["labels"]]
    status, columns = call(server["base"] + "/versions/1:predict", {"inputs": {"text": TEXTS}})
    assert status == 200
    np.testing.assert_allclose(columns["outputs"]["probabilities"], expected["probabilities"], atol=1e-6)
    status, routing = call(server["base"] + ":predict", {"signature_name": "routing", "instances": [{"text": "a cat"}]})
    assert status == 200 and np.array(routing["predictions"][0]["moe_0_expert_ids"]).shape == (8, 2)


BAD_REQUESTS = [
    ("malformed JSON", ":predict", b'{"instances": [', 400, "not valid JSON|Unrecognized request format"),
    ("wrong input name", ":predict", {"instances": [{"txt": "a"}]}, 400, "txt"),
    ("wrong shape", ":predict", {"inputs": {"text": [["a", "b"]]}}, 400, "rank 1|must be a string"),
    ("wrong dtype", ":predict", {"instances": [3]}, 400, "must be a string"),
    ("empty string", ":predict", {"instances": ["ok", ""]}, 400, "item 1 is an empty string"),
    ("non-UTF-8 bytes", ":predict", {"instances": [{"b64": "//4="}]}, 400, "not valid UTF-8"),
    ("too many instances", ":predict", {"instances": ["a"] * 17}, 413, "Too many instances: 17"),
    ("oversized body", ":predict", {"instances": ["a" * 300000]}, 413, "of 300019 bytes exceeds the limit of 200000 bytes"),
    ("unknown signature", ":predict", {"signature_name": "nope", "instances": ["a"]}, 400, "Unknown signature_name"),
    ("missing version", "/versions/9:predict", {"instances": ["a"]}, 404, "Version 9"),
    ("bad version", "/versions/x", None, 404, "positive integer"),
]


@pytest.mark.parametrize("case, route, body, status, message", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_4xx_and_the_server_stays_up(server, case, route, body, status, message):
    raw = body if isinstance(body, bytes) else None
    got, payload = call(server["base"] + route, None if raw else body, raw=raw)
    assert got == status and set(payload) == {"error"}
    assert re.search(message, payload["error"]), payload
    assert not EXCEPTION_NAMES.search(payload["error"]), payload
    assert call(server["base"] + ":predict", {"instances": ["the cat"]})[0] == 200
    assert server["process"].poll() is None


# Issue 14, point 4: client errors that answered 500 (with Python exception types in the body).
DEEP = b"[" * 50_000 + b"]" * 50_000
LONG_INTEGER = b'{"instances": [' + b"9" * 4301 + b"]}"
FORM = "application/x-www-form-urlencoded"  # what `curl -d` sends
CLIENT_ERRORS = [
    ("signature_name list", "POST", ":predict", b'{"signature_name": ["serving_default"], "instances": ["a"]}', "application/json",
     400, r"signature_name must be a string; received list \['serving_default'\]"),
    ("signature_name object", "POST", "/versions/1:predict", b'{"signature_name": {"a": 1}, "instances": ["a"]}', FORM,
     400, r"signature_name must be a string; received dict"),
    ("non-ASCII digits, predict", "POST", "/versions/%C2%B2:predict", b'{"instances": ["a"]}', FORM, 404,
     "positive integer; received '\u00b2'"),
    ("non-ASCII digits, status", "GET", "/versions/%C2%B2", None, None, 404, "positive integer; received '\u00b2'"),
    ("non-ASCII digits, metadata", "GET", "/versions/%D9%A3/metadata", None, None, 404, "positive integer; received '\u0663'"),
    ("50,000 deep, JSON", "POST", ":predict", DEEP, "application/json", 400, "more than 32 levels deep"),
    ("50,000 deep, form", "POST", ":predict", DEEP, FORM, 400, "more than 32 levels deep"),
    ("50,000 deep, version, text", "POST", "/versions/1:predict", DEEP, "text/plain", 400, "more than 32 levels deep"),
    ("4301 digits, form", "POST", ":predict", LONG_INTEGER, FORM, 400, "integer of 4301 digits"),
    ("4301 digits, version, no type", "POST", "/versions/1:predict", LONG_INTEGER, "", 400, "integer of 4301 digits"),
    ("form body", "POST", ":predict", b"instances=a", FORM, 400, "not valid JSON"),
]


@pytest.mark.parametrize("case, method, route, raw, content_type, status, message", CLIENT_ERRORS, ids=[c[0] for c in CLIENT_ERRORS])
def test_client_errors_are_4xx_json_without_exception_types(server, case, method, route, raw, content_type, status, message):
    got, payload = call(server["base"] + route, raw=raw, method=method, content_type=content_type)
    assert (got, set(payload)) == (status, {"error"}), payload
    assert re.search(message, payload["error"]), payload
    assert not EXCEPTION_NAMES.search(payload["error"]), payload
    assert call(server["base"] + ":predict", {"instances": ["the cat"]})[0] == 200


def test_client_errors_log_one_line_and_no_traceback(server):
    marker = "unknown-signature-for-the-log-test"
    assert call(server["base"] + ":predict", {"signature_name": marker, "instances": ["a"]})[0] == 400
    call(server["base"] + ":predict", raw=DEEP, content_type=FORM)
    time.sleep(0.5)
    with open(server["log"]) as handle:
        log = handle.read()
    assert len([line for line in log.splitlines() if marker in line]) == 1
    assert "Traceback" not in log


# Issue 14, point 3: only TF Serving's REST API; KServe's routes (load/unload above all) are gone.
NOT_ROUTES = [
    ("POST", "/v2/repository/models/fortunes/unload"), ("POST", "/v2/repository/models/fortunes/load"),
    ("POST", "/v2/models/fortunes/infer"), ("GET", "/v2/models/fortunes"), ("GET", "/v2/health/ready"),
    ("GET", "/v2/health/live"), ("GET", "/v2"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/metrics"),
    ("GET", "/"), ("GET", "/v1/models"), ("POST", "/v1/models/fortunes:classify"),
]


@pytest.mark.parametrize("method, path", NOT_ROUTES, ids=[f"{m} {p}" for m, p in NOT_ROUTES])
def test_only_tf_serving_routes_exist(server, method, path):
    root = server["base"].split("/v1/")[0]
    status, payload = call(root + path, raw=b"{}" if method == "POST" else None, method=method)
    assert status == 404 and "No route" in payload["error"]
    assert call(server["base"])[0] == 200  # the model is still there
    assert call(server["base"] + ":predict", {"instances": ["the cat"]})[0] == 200


def test_wrong_method_is_405(server):
    status, payload = call(server["base"] + ":predict")
    assert status == 405 and "use POST" in payload["error"]
    status, payload = call(server["base"] + "/metadata", {"instances": ["a"]})
    assert status == 405 and "use GET" in payload["error"]


# Issue 14, point 5: half-sent requests are dropped after --request-seconds (2 s here).
HALF_SENT = [
    ("nothing", b""),
    ("half the headers", b"POST /v1/models/fortunes:predict HTTP/1.1\r\nHost: x\r\n"),
    ("half the body", b"POST /v1/models/fortunes:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inst"),
]


@pytest.mark.parametrize("case, sent", HALF_SENT, ids=[c[0] for c in HALF_SENT])
def test_half_sent_requests_are_dropped_after_the_deadline(server, case, sent):
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=20) as sock:
        sock.sendall(sent)
        for _ in range(3):  # a byte every half second does not extend the deadline
            time.sleep(0.5)
            try:
                sock.sendall(b" " if sent else b"")
            except OSError:
                break
        assert sock.recv(1024) == b""  # closed by the server
    assert 1.5 < time.monotonic() - start < 10
    assert call(server["base"] + ":predict", {"instances": ["the cat"]})[0] == 200


def test_malformed_http_gets_a_json_400(server):
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=20) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):  # until the server closes the connection
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b'{"error": "Malformed HTTP request' in answer


def test_missing_model_is_404(server):
    base = server["base"].rsplit("/", 1)[0]
    for url, body in ((base + "/nope:predict", {"instances": ["a"]}), (base + "/nope", None)):
        status, payload = call(url, body)
        assert status == 404 and "nope" in payload["error"]


def test_new_version_is_served_without_restart(server):
    second = export_saved_model(tiny_classifier(seed=2), server["root"], "fortunes")
    assert second.endswith(os.sep + "2")
    deadline = time.time() + 60
    while [(s["version"], s["state"]) for s in call(server["base"])[1]["model_version_status"]] != [("1", "AVAILABLE"), ("2", "AVAILABLE")]:
        assert time.time() < deadline, "version 2 was not picked up"
        time.sleep(0.3)
    newest = call(server["base"] + ":predict", {"instances": TEXTS})[1]["predictions"]
    np.testing.assert_allclose([p["probabilities"] for p in newest], local_outputs(second, TEXTS)["probabilities"], atol=1e-6)
    old = call(server["base"] + "/versions/1:predict", {"instances": TEXTS})[1]["predictions"]
    np.testing.assert_allclose([p["probabilities"] for p in old], local_outputs(server["first"], TEXTS)["probabilities"], atol=1e-6)
    assert not np.allclose([p["probabilities"] for p in old], [p["probabilities"] for p in newest])


def test_binds_loopback_only(server):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # sends nothing; picks the outgoing interface's address
        address = probe.getsockname()[0]
    except OSError:
        address = "127.0.0.1"
    finally:
        probe.close()
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    with pytest.raises(OSError):
        socket.create_connection((address, server["port"]), timeout=2).close()


def test_serve_refuses_a_missing_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "keras_moe.cli.main", "serve", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "No model folder at" in result.stderr and str(tmp_path / "nope") in result.stderr


def test_multimodal_model_takes_uint8_images_and_b64_png_over_rest(tmp_path):
    """The emoji classifier's signatures through the server: images as nested uint8 lists, PNGs as b64."""
    import tensorflow as tf

    from tests.models.multimodal.test_models import FORMS, raw_inputs, tiny_preprocessor

    model = FORMS["mixture_separate_geometric"]()
    model.preprocessor = tiny_preprocessor()
    path = export_saved_model(model, str(tmp_path), "emoji")
    images, names = raw_inputs()
    expected = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images), names=tf.constant(names))
    pngs = [base64.b64encode(tf.io.encode_png(image).numpy()).decode() for image in images]
    with running_server(os.path.dirname(path)) as (base, *_):
        status, rows = call(base + ":predict", {"instances": [{"images": i.tolist(), "names": n} for i, n in zip(images, names)]})
        assert status == 200
        np.testing.assert_allclose([p["probabilities"] for p in rows["predictions"]], expected["probabilities"].numpy(), atol=1e-5)
        np.testing.assert_allclose([p["gate_weights"] for p in rows["predictions"]], expected["gate_weights"].numpy(), atol=1e-5)
        status, png = call(base + ":predict", {"signature_name": "serve_png",
                                               "inputs": {"png_bytes": [{"b64": p} for p in pngs], "names": names.tolist()}})
        assert status == 200
        np.testing.assert_allclose(png["outputs"]["probabilities"], expected["probabilities"].numpy(), atol=1e-5)
        status, error = call(base + ":predict", {"instances": [{"images": images[0, :, :, :2].tolist(), "names": "x"}]})
        assert status == 400 and "channels" in error["error"]
