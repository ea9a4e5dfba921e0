"""`keras-moe serve` end to end: a real server process on a free loopback port, every route, bad requests."""

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest

from keras_moe.export import export_saved_model
from tests.export.tiny import tiny_classifier

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="serving exports need TensorFlow")

TEXTS = ["the cat sat", "a dog ran"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url, body=None, raw=None, method=None):
    """`(status, parsed JSON)`; `raw` sends bytes as they are."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def local_outputs(path, texts, signature="serving_default"):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    outputs = tf.saved_model.load(path).signatures[signature](text=tf.constant(texts))
    return {k: v.numpy() for k, v in outputs.items()}


@contextlib.contextmanager
def running_server(model_folder, *flags):
    """`keras-moe serve model_folder` in its own process on a free loopback port; stopped on exit."""
    port = free_port()
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    log = open(os.path.join(os.path.dirname(model_folder), "server.log"), "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_moe.cli.main", "serve", model_folder, "--port", str(port), *flags],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base = f"http://127.0.0.1:{port}/v1/models/{os.path.basename(model_folder)}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if call(base)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if process.poll() is not None or time.time() > deadline:
                log.flush()
                raise RuntimeError("The server did not start:\n" + open(log.name).read()[-3000:])
            time.sleep(0.5)
        yield base, process, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("saved_models"))
    first = export_saved_model(tiny_classifier(seed=1), root, "fortunes")
    flags = ["--poll-seconds", "0.3", "--max-batch-size", "16", "--max-body-bytes", "20000"]
    with running_server(os.path.join(root, "fortunes"), *flags) as (base, process, port):
        yield {"base": base, "root": root, "first": first, "process": process, "port": port}


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
    ("oversized body", ":predict", {"instances": ["a" * 30000]}, 413, "exceeds the limit of 20000 bytes"),
    ("unknown signature", ":predict", {"signature_name": "nope", "instances": ["a"]}, 400, "Unknown signature_name"),
    ("missing version", "/versions/9:predict", {"instances": ["a"]}, 404, "Version 9"),
    ("bad version", "/versions/x", None, 404, "positive integer"),
]


@pytest.mark.parametrize("case, route, body, status, message", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_4xx_and_the_server_stays_up(server, case, route, body, status, message):
    raw = body if isinstance(body, bytes) else None
    got, payload = call(server["base"] + route, None if raw else body, raw=raw)
    assert got == status and set(payload) == {"error"}
    assert __import__("re").search(message, payload["error"]), payload
    assert call(server["base"] + ":predict", {"instances": ["the cat"]})[0] == 200
    assert server["process"].poll() is None


def test_missing_model_is_404(server):
    base = server["base"].rsplit("/", 1)[0]
    for url, body in ((base + "/nope:predict", {"instances": ["a"]}), (base + "/nope", None)):
        status, payload = call(url, body)
        assert status == 404 and "nope" in payload["error"]


def test_new_version_is_served_without_restart(server):
    second = export_saved_model(tiny_classifier(seed=2), server["root"], "fortunes")
    assert second.endswith(os.sep + "2")
    deadline = time.time() + 60
    while [s["version"] for s in call(server["base"])[1]["model_version_status"]] != ["1", "2"]:
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


def test_serve_refuses_a_folder_without_versions(tmp_path):
    result = subprocess.run([sys.executable, "-m", "keras_moe.cli.main", "serve", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "No loadable version" in result.stderr


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
    with running_server(os.path.dirname(path)) as (base, _, _):
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
