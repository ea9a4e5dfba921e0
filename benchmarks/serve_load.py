"""Load check of `keras-moe serve`: 1,000 predict requests from 8 concurrent clients on loopback.

    keras-moe train recipe=switch_classifier          # exports saved_models/switch_classifier/<n>/
    python benchmarks/serve_load.py [--path saved_models/switch_classifier] [--requests 1000] [--clients 8]

Starts the server as its own process on a free loopback port, sends `--requests` row-format
requests (`--batch` texts each, drawn from the fortunes validation split when installed), and
checks every response against the same SavedModel run in this process (labels equal,
probabilities within 1e-5). Without `--path` and without a trained export it serves an untrained
tiny classifier (said in the JSON). Prints one JSON line last: throughput, p50/p99 latency, errors.
"""

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url, body):
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            payload, status = json.loads(response.read()), response.status
    except urllib.error.HTTPError as error:
        payload, status = json.loads(error.read()), error.code
    return status, payload, time.perf_counter() - start


def texts(count):
    try:
        from keras_moe.data.text_classification import load_fortunes

        items = load_fortunes(categories=None)[0]
    except Exception:  # fortunes not installed: short built-in texts
        items = [f"a fortune about item {i}: the cat sat on the mat" for i in range(64)]
    rng = np.random.default_rng(0)
    return [items[i] for i in rng.choice(len(items), size=count, replace=len(items) < count)]


def model_path(path):
    if path:
        return os.path.abspath(path), "given"
    default = os.path.join(ROOT, "saved_models", "switch_classifier")
    if os.path.isdir(default):
        return default, "trained switch_classifier"
    sys.path.insert(0, ROOT)
    from keras_moe.export import export_saved_model
    from tests.export.tiny import tiny_classifier

    root = tempfile.mkdtemp()
    export_saved_model(tiny_classifier(), root, "tiny_classifier")
    return os.path.join(root, "tiny_classifier"), "untrained tiny classifier"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", help="model folder saved_models/<name> (integer versions inside)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1, help="texts per request")
    args = parser.parse_args()

    path, which = model_path(args.path)
    name = os.path.basename(path.rstrip(os.sep))
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from keras_moe.export import list_versions

    version = list_versions(path)[-1]
    signature = tf.saved_model.load(os.path.join(path, str(version))).signatures["serving_default"]
    bodies = [texts(args.batch * 50)[i * args.batch:(i + 1) * args.batch] for i in range(50)]
    expected = [{k: v.numpy() for k, v in signature(text=tf.constant(b)).items()} for b in bodies]

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "keras_moe.cli.main", "serve", path, "--port", str(port), "--num-versions", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ), cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}/v1/models/{name}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.5)
        post(url + ":predict", {"instances": bodies[0]})  # warm-up

        def one(i):
            body = bodies[i % len(bodies)]
            status, payload, seconds = post(url + ":predict", {"instances": body})
            if status != 200:
                return "error", seconds
            want = expected[i % len(bodies)]
            got = payload.get("predictions", [])
            ok = len(got) == len(body) and all(
                p["labels"] == want["labels"][j].decode() and np.allclose(p["probabilities"], want["probabilities"][j], atol=1e-5)
                for j, p in enumerate(got))
            return ("ok" if ok else "mismatch"), seconds

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - start
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    latencies = sorted(s * 1000 for _, s in results)
    outcome = [r for r, _ in results]
    print(json.dumps({
        "benchmark": "serve_load", "model": which, "path": path, "version": version,
        "requests": args.requests, "clients": args.clients, "instances_per_request": args.batch,
        "ok": outcome.count("ok"), "mismatches": outcome.count("mismatch"), "errors": outcome.count("error"),
        "lost": args.requests - len(results), "wall_seconds": round(wall, 2),
        "requests_per_second": round(args.requests / wall, 1),
        "p50_ms": round(statistics.median(latencies), 2), "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
    }))


if __name__ == "__main__":
    main()
