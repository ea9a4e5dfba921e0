"""`keras-moe serve saved_models/<name>`: TF Serving's REST API (and, with `--grpc-port`, its gRPC API).

    keras-moe serve saved_models/shakespeare_moe                      # http://127.0.0.1:8501
    keras-moe serve saved_models/shakespeare_moe --grpc-port 8500     # and gRPC on 127.0.0.1:8500
    curl -d '{"instances": ["ROMEO.\\n"]}' http://127.0.0.1:8501/v1/models/shakespeare_moe:predict

The pieces: `versions` (which versions are served, polled every `--poll-seconds`), `workers` and
`worker` (one process per loaded version, so memory stays bounded over any number of reloads),
`rest_app` (the REST routes on uvicorn, with the request deadline), `grpc_api` (the gRPC services),
`body`, `rest` and `specs` (parsing and checking requests). docs/serving.md has the details.
"""

import argparse
import logging
import os
import threading

from keras_moe.serving.versions import ModelVersions

log = logging.getLogger("keras_moe.serving")


def poll_forever(models, seconds, stop):
    while not stop.wait(seconds):
        for model in models.values():
            try:
                model.poll()
            except Exception:  # keep serving what is loaded; a fault of ours, so with its traceback
                log.exception("Polling %s failed", model.base_path)


def serve(path, name=None, host="127.0.0.1", port=8501, grpc_port=None, poll_seconds=1.0, num_versions=2,
          max_batch_size=256, max_body_bytes=8 * 1024 * 1024, request_seconds=30.0):
    """Serves `path` (`<root>/<name>/` with integer version folders) until interrupted."""
    import uvicorn

    from keras_moe.serving.rest_app import RestApp, protocol_with_deadline

    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No model folder at {path!r}: expected {path}/<version>/saved_model.pb.")
    name = name or os.path.basename(path.rstrip(os.sep))
    models = {name: ModelVersions(name, path, num_versions=num_versions)}
    models[name].poll()  # the first versions load before the ports open
    if not models[name].versions():
        log.warning("No loadable version under %s yet: answering 503 until one loads", path)
    stop = threading.Event()
    threading.Thread(target=poll_forever, args=(models, poll_seconds, stop), daemon=True, name="poll").start()
    grpc_server = None
    try:
        if grpc_port is not None:
            from keras_moe.serving.grpc_api import start_grpc_server

            grpc_server = start_grpc_server(models, host, grpc_port, max_batch_size, max_body_bytes)
        config = uvicorn.Config(
            RestApp(models, max_batch_size, max_body_bytes), host=host, port=port, http=protocol_with_deadline(request_seconds),
            lifespan="off", access_log=False, log_config=None, timeout_keep_alive=5, timeout_graceful_shutdown=10,
        )
        grpc_text = f" and grpc://{host}:{grpc_port}" if grpc_port is not None else ""
        print(f"Serving {name} versions {models[name].versions()} at http://{host}:{port}/v1/models/{name}{grpc_text}", flush=True)
        uvicorn.Server(config).run()
    finally:
        stop.set()
        if grpc_server is not None:
            grpc_server.stop(grace=5)
        for model in models.values():
            model.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-moe serve", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="model folder in TF Serving layout: saved_models/<name> (integer version folders)")
    parser.add_argument("--name", help="model name in the URL (default: the folder name)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8501, help="HTTP port (default 8501, TF Serving's REST port)")
    parser.add_argument("--grpc-port", type=int, help="also serve TF Serving's gRPC API on this port (TF Serving uses 8500)")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    parser.add_argument("--num-versions", type=int, default=2, help="serve the newest N loadable versions")
    parser.add_argument("--max-batch-size", type=int, default=256, help="most instances per request")
    parser.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, help="largest request body (and gRPC message)")
    parser.add_argument("--request-seconds", type=float, default=30.0,
                        help="a request's headers and body must arrive within this time, or the connection is dropped")
    args = parser.parse_args(argv)
    for flag in ("port", "grpc_port", "num_versions", "max_batch_size", "max_body_bytes"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1; received {value}")
    for flag in ("poll_seconds", "request_seconds"):
        if not getattr(args, flag) > 0:
            parser.error(f"--{flag.replace('_', '-')} must be > 0; received {getattr(args, flag)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        serve(args.path, args.name, args.host, args.port, args.grpc_port, args.poll_seconds, args.num_versions,
              args.max_batch_size, args.max_body_bytes, args.request_seconds)
    except (FileNotFoundError, OSError) as error:
        raise SystemExit(str(error)) from None
