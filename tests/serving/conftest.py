"""One server for the end-to-end REST and gRPC tests: a tiny classifier, version 1, on free loopback ports."""

import os

import keras
import pytest

from tests.serving.helpers import running_server


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("serving exports need TensorFlow")
    from keras_moe.export import export_saved_model
    from tests.export.tiny import tiny_classifier

    root = str(tmp_path_factory.mktemp("saved_models"))
    first = export_saved_model(tiny_classifier(seed=1), root, "fortunes")
    flags = ["--poll-seconds", "0.3", "--max-batch-size", "16", "--max-body-bytes", "200000", "--request-seconds", "2"]
    with running_server(os.path.join(root, "fortunes"), *flags) as (base, process, port, grpc_port, log):
        yield {"base": base, "root": root, "first": first, "process": process, "port": port, "grpc_port": grpc_port, "log": log}
