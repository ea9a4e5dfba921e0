"""The server's handle on one version worker process (`keras_moe.serving.worker`).

`Worker(path, version)` starts the process and returns once the version has loaded (or raises
`LoadError` with the worker's reason). `predict` sends a request and returns a
`concurrent.futures.Future` of the output arrays; many requests may be in flight at once, matched
to their answers by id. `close()` ends the process; the operating system takes back all its memory.
"""

import base64
import concurrent.futures
import logging
import os
import socket
import subprocess
import sys
import threading

from keras_moe.serving import wire
from keras_moe.serving.specs import InputSpec, RequestError

log = logging.getLogger("keras_moe.serving")

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LoadError(RuntimeError):
    """A version could not be loaded; the message says why."""


class ModelFailure(RuntimeError):
    """The model failed on a request for a reason that is not the request's (answered 500)."""


class Worker:
    def __init__(self, path, version, load_timeout=600.0, threads=4):
        self.path, self.version = path, version
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # The worker runs the same keras_moe as this process, wherever that was imported from.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keras_moe.serving.worker", "--fd", str(theirs.fileno()), "--threads", str(threads), path],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=sys.stderr, env=env,
        )
        theirs.close()
        self._sock = ours
        try:
            ours.settimeout(load_timeout)
            header, _ = wire.unpack(wire.receive(ours))
            ours.settimeout(None)
        except TimeoutError:
            self.close()
            raise LoadError(f"The version did not load within {load_timeout:g} s.") from None
        except (wire.ConnectionClosed, OSError):
            self.close()
            raise LoadError(f"The worker process exited with code {self.process.returncode} while loading.") from None
        if not header["ok"]:
            self.close()
            raise LoadError(header["error"])
        self.signatures = header["signatures"]
        self.signature_def_map = base64.b64decode(header["signature_def_map"])
        self.input_specs = {
            name: {key: InputSpec(key, spec["dtype"], tuple(spec["shape"] or ())) for key, spec in signature["inputs"].items()}
            for name, signature in self.signatures.items()
        }
        self._lock = threading.Lock()
        self._pending, self._next_id, self._closed = {}, 0, False
        threading.Thread(target=self._read_answers, name=f"worker-{version}", daemon=True).start()

    def alive(self):
        return not self._closed and self.process.poll() is None

    def predict(self, signature, inputs, outputs=None):
        """A future of `{output name: numpy array}`; it raises `RequestError` (4xx/503) or `ModelFailure`."""
        future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RequestError(f"Version {self.version} was just unloaded; send the request again.", status=503)
            request_id, self._next_id = self._next_id, self._next_id + 1
            self._pending[request_id] = future
            try:
                wire.send(self._sock, wire.pack({"id": request_id, "signature": signature, "outputs": outputs}, inputs))
            except OSError:
                self._pending.pop(request_id)
                raise RequestError(f"The process serving version {self.version} stopped; send the request again.", status=503) from None
        return future

    def _read_answers(self):
        try:
            while True:
                header, arrays = wire.unpack(wire.receive(self._sock))
                with self._lock:
                    future = self._pending.pop(header["id"])
                if header["ok"]:
                    future.set_result(arrays)
                elif header["status"] == 500:
                    future.set_exception(ModelFailure(header["error"]))
                else:
                    future.set_exception(RequestError(header["error"], status=header["status"]))
        except (wire.ConnectionClosed, OSError):
            pass
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        if pending:
            log.error("The process serving version %s stopped with %d requests in flight", self.version, len(pending))
        for future in pending.values():
            future.set_exception(RequestError(f"The process serving version {self.version} stopped; send the request again.", status=503))

    def close(self, timeout=10.0):
        """Ends the worker: closing the socket makes it exit; killed if it has not after `timeout` s."""
        if getattr(self, "_lock", None) is not None:
            with self._lock:
                self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
