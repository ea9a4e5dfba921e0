"""TF Serving's REST API as a small ASGI app on uvicorn, and nothing else.

Routes (https://www.tensorflow.org/tfx/serving/api_rest):
    POST /v1/models/<name>[/versions/<n>]:predict       row or columnar predict (`keras_moe.serving.rest`)
    GET  /v1/models/<name>[/versions/<n>]               model status: TF Serving's health check
    GET  /v1/models/<name>[/versions/<n>]/metadata      signatures with their inputs and outputs
Any other path answers 404 and a known path with the wrong method 405, both as JSON: no model
loading or unloading, no metrics, no OpenAPI pages.

Why not KServe's `ModelServer` (what `keras-moe serve` used before): it puts its V1 and V2
inference routes, its model repository routes (`/v2/repository/models/<name>/load|unload`, which took
a model off `:predict` for good), `/openapi.json`, `/docs` and `/metrics` on one global FastAPI app;
it parses `sys.argv` when imported; it decodes JSON bodies with its own unbounded parser (a
different one from ours whenever the Content-Type was not JSON) and logs a traceback for every
client error it handles. Restricting it means editing the routes of its private app; the ~200 lines
here are smaller, and nothing is reachable that is not written below.

Every request body is read with one size limit and parsed by the one bounded parser
(`keras_moe.serving.body`), whatever its Content-Type. Client errors answer 4xx with
`{"error": ...}` and log one line; a version that is not there answers 404, no version at all 503.
`DeadlineProtocol` (uvicorn's h11 protocol plus a deadline) drops a connection whose request has not
fully arrived `request_seconds` after the connection opened or the previous response ended.
"""

import asyncio
import json
import logging
import re

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from keras_moe.serving.body import parse_json_body
from keras_moe.serving.rest import make_response, parse_request
from keras_moe.serving.specs import RequestError, shown
from keras_moe.serving.workers import ModelFailure

log = logging.getLogger("keras_moe.serving")

ROUTE = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<verb>/metadata|:predict)?")
ROUTES_HELP = "GET /v1/models/<name>[/versions/<n>][/metadata] and POST /v1/models/<name>[/versions/<n>]:predict"


class ClientGone(Exception):
    """The client disconnected (or was dropped) before its request arrived."""


class RestApp:
    """The ASGI app: `models` is `{name: keras_moe.serving.versions.ModelVersions}`."""

    def __init__(self, models, max_batch_size=256, max_body_bytes=8 * 1024 * 1024):
        self.models, self.max_batch_size, self.max_body_bytes = models, max_batch_size, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        headers = []
        try:
            status, payload = await self.handle(scope, receive)
        except RequestError as error:
            status, payload = error.status, {"error": str(error)}
            log.warning("%s %s -> %d: %s", scope["method"], shown(scope["path"], 200), status, error)
            if status == 405:
                headers.append((b"allow", b"POST" if scope["path"].endswith(":predict") else b"GET"))
            if status == 413:  # the rest of the body is not read: end the connection after answering
                headers.append((b"connection", b"close"))
        except ClientGone:
            return
        except ModelFailure as error:  # logged with its traceback by the worker
            status, payload = 500, {"error": str(error)}
        except Exception:  # a fault of the server: the traceback goes to the log, not to the client
            log.exception("%s %s failed", scope["method"], shown(scope["path"], 200))
            status, payload = 500, {"error": "Internal server error; the server log has the details."}
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})

    async def handle(self, scope, receive):
        raw = await read_body(scope, receive, self.max_body_bytes)
        route = ROUTE.fullmatch(scope["path"])
        if route is None:
            raise RequestError(f"No route {scope['method']} {shown(scope['path'])}; this server answers {ROUTES_HELP}.", 404)
        name, verb = route["name"], route["verb"] or ""
        allowed = "POST" if verb == ":predict" else "GET"
        if scope["method"] != allowed:
            raise RequestError(f"{scope['method']} is not allowed on {shown(scope['path'])}; use {allowed}.", 405)
        model = self.models.get(name)
        if model is None:
            raise RequestError(f"Model {shown(name)} is not served here; this server serves {sorted(self.models)}.", 404)
        version = parse_version(route["version"])
        if verb == ":predict":
            return 200, await self.predict(model, version, raw)
        if verb == "/metadata":
            with model.use(version) as worker:
                return 200, metadata(name, worker)
        ready, entries, why = model.status(version)
        return (200, {"model_version_status": entries}) if ready else (503, {"error": why, "model_version_status": entries})

    async def predict(self, model, version, raw):
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, parse_json_body, raw)
        with model.use(version) as worker:
            request = await loop.run_in_executor(None, parse_request, body, worker.input_specs, self.max_batch_size)
            outputs = await asyncio.wrap_future(worker.predict(request.signature_name, request.inputs))
        return await loop.run_in_executor(None, make_response, request, outputs)


def parse_version(text):
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,18}", text):  # ASCII digits only: int() also takes '²' and '٣'
        raise RequestError(f"The version must be a positive integer; received {shown(text)}.", 404)
    return int(text)


def metadata(name, worker):
    signature_def = {
        signature: {
            "inputs": {key: _shown_spec(spec) for key, spec in specs["inputs"].items()},
            "outputs": {key: _shown_spec(spec) for key, spec in specs["outputs"].items()},
            "method_name": "tensorflow/serving/predict",
        }
        for signature, specs in worker.signatures.items()
    }
    return {"model_spec": {"name": name, "signature_name": "", "version": str(worker.version)},
            "metadata": {"signature_def": {"signature_def": signature_def}}}


def _shown_spec(spec):
    return {"dtype": spec["dtype"], "shape": [-1 if d is None else d for d in spec["shape"] or []]}


async def read_body(scope, receive, limit):
    """The whole request body, at most `limit` bytes (`RequestError` 413 beyond)."""
    declared = dict(scope["headers"]).get(b"content-length")  # h11 has checked that it is a number
    if declared is not None and (len(declared) > 18 or int(declared) > limit):
        raise RequestError(f"The request body of {declared.decode()[:20]} bytes exceeds the limit of {limit} bytes.", 413)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(f"The request body exceeds the limit of {limit} bytes.", 413)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus: a request must arrive whole within `request_seconds`.

    uvicorn times out idle kept-alive connections only, and any byte received resets even that; a
    client sending half a request (or a byte every few seconds) would hold a connection for ever.
    The deadline starts when the connection opens and again after each response; when it passes
    before the request's headers and body are all in, the connection is closed.
    """

    request_seconds = 30.0

    def connection_made(self, transport):
        super().connection_made(transport)
        self._deadline, self._received = None, 0
        self._arm()

    def _arm(self):
        self._disarm()
        self._received = 0
        self._deadline = self.loop.call_later(self.request_seconds, self._expired)

    def _disarm(self):
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def data_received(self, data):
        self._received += len(data)
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # the whole request is in (or the connection is ending)

    def on_response_complete(self):
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()

    def connection_lost(self, exc):
        self._disarm()
        super().connection_lost(exc)

    def _expired(self):
        self._deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            if self._received:
                log.warning("Dropped %s:%s: its request did not arrive whole within %g s", *(self.client or ("?", "?")),
                            self.request_seconds)
            self.transport.close()

    def send_400_response(self, msg):
        """Malformed HTTP: uvicorn answers text; answer JSON like every other error."""
        body = json.dumps({"error": f"Malformed HTTP request: {msg}"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request")))
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()


def protocol_with_deadline(seconds):
    """A `DeadlineProtocol` class with `request_seconds = seconds`, for `uvicorn.Config(http=...)`."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"request_seconds": float(seconds)})
