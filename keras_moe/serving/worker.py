"""One served model version in its own process: `python -m keras_moe.serving.worker --fd N PATH`.

Why a process per version: every `tf.saved_model.load` keeps about 137 MB that `del` and garbage
collection never give back (TensorFlow's graph and function caches), so a server that loads new
versions forever in one process grows forever. A worker loads exactly one version; unloading that
version ends the process and the operating system takes all of its memory back.

The worker talks to the server over the inherited socket `--fd` (`keras_moe.serving.wire`):
- once loaded, it sends `{"ok": true, "signatures": ..., "signature_def_map": <base64>}` (input and
  output specs per signature; the SavedModel's `SignatureDefMap` proto for gRPC metadata), or
  `{"ok": false, "error": ...}` and exits;
- then each `{"id", "signature", "outputs"}` + input arrays is answered by `{"id", "ok": true}` +
  output arrays, or `{"id", "ok": false, "status", "error"}`: 400 for inputs the graph rejects, 503
  when it runs out of memory, 500 otherwise (logged with its traceback: a fault of the server);
- the end of the stream (the server closed the socket, or died) ends the worker at once.
"""

import argparse
import base64
import concurrent.futures
import logging
import os
import socket
import sys
import threading

from keras_moe.serving import wire

log = logging.getLogger("keras_moe.serving.worker")


def load(path):
    """`(saved model, signatures, specs JSON, SignatureDefMap bytes)` for the SavedModel at `path`."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers TF Text ops, as TF Serving's build has them)
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    saved_model = tf.saved_model.load(path, tags=["serve"])
    signatures = dict(saved_model.signatures)
    if "serving_default" not in signatures:
        raise ValueError(f"{path} has no 'serving_default' signature; it has {sorted(signatures)}.")
    specs = {}
    for name, function in signatures.items():
        _, inputs = function.structured_input_signature
        specs[name] = {
            "inputs": {key: _spec(spec) for key, spec in inputs.items()},
            "outputs": {key: _spec(spec) for key, spec in function.structured_outputs.items()},
        }
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
        proto.ParseFromString(handle.read())
    graph = next(g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags)
    definitions = get_model_metadata_pb2.SignatureDefMap()
    for name in signatures:
        definitions.signature_def[name].CopyFrom(graph.signature_def[name])
    return saved_model, signatures, specs, definitions.SerializeToString()


def _spec(spec):
    import tensorflow as tf

    dtype = "string" if spec.dtype == tf.string else spec.dtype.name
    return {"dtype": dtype, "shape": spec.shape.as_list() if spec.shape.rank is not None else None}


def predict(signatures, header, inputs):
    """One request -> `(reply header, output arrays)`."""
    import tensorflow as tf

    function = signatures.get(header["signature"])
    if function is None:
        return {"ok": False, "status": 400, "error": f"Unknown signature {header['signature']!r}."}, {}
    try:
        outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as error:
        return {"ok": False, "status": 400, "error": _first_message(error)}, {}
    except tf.errors.ResourceExhaustedError as error:
        log.error("Out of memory on a request: %s", _first_message(error))
        return {"ok": False, "status": 503, "error": "The model ran out of memory on this request; send fewer or shorter items."}, {}
    wanted = header.get("outputs") or sorted(outputs)
    return {"ok": True}, {name: outputs[name].numpy() for name in wanted}


def _first_message(error):
    """The line of a TensorFlow error that says what failed (an assertion's message, or its first line)."""
    message = getattr(error, "message", None) or str(error)
    for line in message.splitlines():
        if "assertion failed" in line or "Invalid" in line:
            return line.strip()
    return message.splitlines()[0].strip() if message.strip() else "The model rejected the inputs."


def serve(sock, signatures, threads):
    lock = threading.Lock()

    def answer(header, inputs):
        try:
            reply, outputs = predict(signatures, header, inputs)
        except Exception as error:  # a fault of the server, not of the request: keep the traceback
            log.exception("Request %s failed", header.get("id"))
            reply, outputs = {"ok": False, "status": 500, "error": f"The model failed on this request: {error}"}, {}
        payload = wire.pack(dict(reply, id=header["id"]), outputs)
        with lock:
            wire.send(sock, payload)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        while True:
            try:
                header, inputs = wire.unpack(wire.receive(sock))
            except (wire.ConnectionClosed, OSError):
                os._exit(0)  # the server is gone or unloaded this version: nobody waits for answers
            pool.submit(answer, header, inputs)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_moe.serving.worker", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="one SavedModel version folder")
    parser.add_argument("--fd", type=int, required=True, help="the inherited socket to the server")
    parser.add_argument("--threads", type=int, default=4, help="requests run at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker {os.path.basename(args.path)}: %(message)s")
    sock = socket.socket(fileno=args.fd)
    try:
        _, signatures, specs, definitions = load(args.path)
    except Exception as error:  # reported to the server, which keeps serving what it has
        log.exception("Could not load %s", args.path)
        message = str(error).strip().splitlines()[0] if str(error).strip() else "the SavedModel could not be loaded"
        wire.send(sock, wire.pack({"ok": False, "error": message}))
        sys.exit(1)
    wire.send(sock, wire.pack({"ok": True, "signatures": specs, "signature_def_map": base64.b64encode(definitions).decode()}))
    serve(sock, signatures, args.threads)


if __name__ == "__main__":
    main()
