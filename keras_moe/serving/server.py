"""`keras-moe serve saved_models/<name>`: TF Serving's REST API on KServe's Python `ModelServer`.

    keras-moe serve saved_models/shakespeare_moe                # http://127.0.0.1:8501
    curl -d '{"instances": ["ROMEO.\\n"]}' http://127.0.0.1:8501/v1/models/shakespeare_moe:predict

Routes (TF Serving's REST API, https://www.tensorflow.org/tfx/serving/api_rest):
    POST /v1/models/<name>:predict                      newest version (KServe's V1 route)
    POST /v1/models/<name>/versions/<n>:predict         one version
    GET  /v1/models/<name>[/versions/<n>]               version status
    GET  /v1/models/<name>[/versions/<n>]/metadata      signatures, input and output specs

KServe provides the HTTP server (FastAPI + uvicorn), JSON decoding, the V1 predict route and its
error responses; this module adds the version routes, TF Serving's request/response format
(`keras_moe.serving.rest`), a request-size limit, and polling for new versions. Client errors
answer 4xx with `{"error": "..."}`; the server stays up.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import threading

from keras_moe.serving.rest import RequestError, make_response, parse_request
from keras_moe.serving.servable import VersionedModel

log = logging.getLogger("keras_moe.serving")


def _import_kserve():
    """KServe parses `sys.argv` when imported; keep our own arguments away from it."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve
        from kserve import model_server
    finally:
        sys.argv = argv
    return kserve, model_server


class BodySizeLimit:
    """ASGI middleware: requests whose body exceeds `max_bytes` get 413 before the body is parsed."""

    def __init__(self, app, max_bytes):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _send_json(send, 413, {"error": f"Request body of {declared.decode()} bytes exceeds the limit of {self.max_bytes} bytes."})
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise RequestError(f"Request body exceeds the limit of {self.max_bytes} bytes.", status=413)
            return message

        return await self.app(scope, limited_receive, send)


async def _send_json(send, status, payload):
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def make_model_class(kserve):
    class KerasMoEModel(kserve.Model):
        """A KServe model that serves every loaded version of one SavedModel folder."""

        def __init__(self, name, versions, max_batch_size):
            super().__init__(name)
            self.versions, self.max_batch_size = versions, max_batch_size

        def load(self):
            self.ready = bool(self.versions.versions())
            return self.ready

        async def predict(self, payload, headers=None, version=None):
            if isinstance(payload, (bytes, bytearray)):
                payload = decode_json(payload)
            servable = self.versions.get(version)
            request = parse_request(payload, servable.input_specs, self.max_batch_size)
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(None, servable.predict, request.signature_name, request.inputs)
            return make_response(request, outputs)

    return KerasMoEModel


def decode_json(body):
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(f"The request body is not valid JSON: {error}") from None


def version_status(versions, version=None):
    shown = versions.versions() if version is None else [versions.get(version).version]
    return {"model_version_status": [
        {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}} for v in shown
    ]}


def add_routes(app, model):
    """TF Serving's status, metadata and versioned predict routes (registered before KServe's)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    def check(name):
        if name != model.name:
            raise RequestError(f"Model {name!r} is not served here; this server serves {model.name!r}.", status=404)

    def parse_version(version):
        if not version.isdigit():
            raise RequestError(f"The version must be a positive integer; received {version!r}.", status=404)
        return int(version)

    @app.get("/v1/models/{name}")
    async def status(name: str):
        check(name)
        return version_status(model.versions)

    @app.get("/v1/models/{name}/metadata")
    async def metadata(name: str):
        check(name)
        servable = model.versions.get()
        return {"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)}, "metadata": servable.metadata()}

    @app.get("/v1/models/{name}/versions/{version}")
    async def status_of_version(name: str, version: str):
        check(name)
        return version_status(model.versions, parse_version(version))

    @app.get("/v1/models/{name}/versions/{version}/metadata")
    async def metadata_of_version(name: str, version: str):
        check(name)
        servable = model.versions.get(parse_version(version))
        return {"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)}, "metadata": servable.metadata()}

    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def predict_version(name: str, version: str, request: Request):
        check(name)
        number = parse_version(version)
        return JSONResponse(await model.predict(decode_json(await request.body()), version=number))

    @app.exception_handler(RequestError)
    async def request_error(_, error):
        return JSONResponse(status_code=error.status, content={"error": str(error)})


def poll_forever(versions, seconds, stop):
    while not stop.wait(seconds):
        try:
            versions.poll()
        except Exception as error:  # keep serving what is loaded
            log.error("Polling %s failed: %s", versions.base_path, error)


def serve(path, name=None, host="127.0.0.1", port=8501, poll_seconds=1.0, num_versions=2, max_batch_size=256,
          max_body_bytes=8 * 1024 * 1024):
    """Serves `path` (`<root>/<name>/` with integer version folders) until interrupted."""
    kserve, model_server = _import_kserve()
    from kserve.protocol.rest.server import RESTServer

    path = os.path.abspath(path)
    name = name or os.path.basename(path.rstrip(os.sep))
    versions = VersionedModel(path, num_versions=num_versions)
    model = make_model_class(kserve)(name, versions, max_batch_size)
    model.load()

    app = model_server.app
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    add_routes(app, model)

    server = kserve.ModelServer(http_port=port, enable_grpc=False, workers=1)
    server._register_and_check_atleast_one_model_is_ready([model])
    rest = RESTServer(model_server.FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension, port)
    rest.config.host = host  # KServe binds 0.0.0.0; we bind loopback unless told otherwise
    server._rest_server = rest
    server.servers.append(rest.start())
    stop = threading.Event()
    threading.Thread(target=poll_forever, args=(versions, poll_seconds, stop), daemon=True).start()
    log.info("Serving %s (versions %s) at http://%s:%s/v1/models/%s", path, versions.versions(), host, port, name)
    print(f"Serving {name} versions {versions.versions()} at http://{host}:{port}/v1/models/{name}", flush=True)
    try:
        server.setup_event_loop()
        asyncio.run(server._serve())
    finally:
        stop.set()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-moe serve", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="model folder in TF Serving layout: saved_models/<name> (integer version folders)")
    parser.add_argument("--name", help="model name in the URL (default: the folder name)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8501, help="HTTP port (default 8501, TF Serving's REST port)")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    parser.add_argument("--num-versions", type=int, default=2, help="serve the newest N versions")
    parser.add_argument("--max-batch-size", type=int, default=256, help="most instances per request")
    parser.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, help="largest request body")
    args = parser.parse_args(argv)
    for flag in ("port", "num_versions", "max_batch_size", "max_body_bytes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1; received {getattr(args, flag)}")
    if args.poll_seconds <= 0:
        parser.error(f"--poll-seconds must be > 0; received {args.poll_seconds}")
    try:
        serve(args.path, args.name, args.host, args.port, args.poll_seconds, args.num_versions, args.max_batch_size,
              args.max_body_bytes)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
