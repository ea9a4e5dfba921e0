"""Shared by the serving tests and `benchmarks/serve_load.py`: a server process on a free loopback
port, HTTP calls that return `(status, JSON)`, and the memory of a process with its children."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url, body=None, raw=None, method=None, content_type="application/json", timeout=60):
    """`(status, parsed JSON)`; `raw` sends bytes as they are; `content_type=None` sends no Content-Type."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {} if content_type is None else {"Content-Type": content_type}
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_until(condition, seconds=120, what="the condition"):
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"Timed out after {seconds} s waiting for {what}.")
        time.sleep(0.2)


@contextlib.contextmanager
def running_server(model_folder, *flags, ready=True, log_path=None):
    """`keras-moe serve model_folder` in its own process on free loopback ports; stopped on exit.

    Yields `(base URL, process, HTTP port, gRPC port, log path)`; waits until the model status
    answers 200 (`ready=True`) or the port answers at all.
    """
    port, grpc_port = free_port(), free_port()
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    log_path = log_path or os.path.join(os.path.dirname(model_folder), f"server-{port}.log")
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_moe.cli.main", "serve", model_folder, "--port", str(port),
         "--grpc-port", str(grpc_port), *flags],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}/v1/models/{os.path.basename(model_folder)}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                if call(base)[0] == 200 or not ready:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if process.poll() is not None or time.time() > deadline:
                log.flush()
                raise RuntimeError("The server did not start:\n" + open(log_path).read()[-3000:])
            time.sleep(0.3)
        yield base, process, port, grpc_port, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def children(pid):
    """Process ids of `pid`'s children (Linux /proc)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            found += [int(child) for child in handle.read().split()]
    return found


def tree_rss_mb(pid):
    """Resident memory of `pid` and all its descendants, in MB (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as handle:
                total += next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
            stack += children(current)
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue  # ended while we looked
    return total / 1024


def add_version(model_folder, source_version, version):
    """Publishes a copy of version `source_version` as `version` the way exports do: copy, then rename."""
    staging = os.path.join(model_folder, f".staging-{version}")
    shutil.copytree(os.path.join(model_folder, str(source_version)), staging)
    os.rename(staging, os.path.join(model_folder, str(version)))
