"""Load check of `keras-moe serve` on loopback: good load, mixed good/bad load, and version changes.

    keras-moe train recipe=switch_classifier          # exports saved_models/switch_classifier/<n>/
    python benchmarks/serve_load.py [--path saved_models/switch_classifier] [--requests 1000] [--clients 8]

Serves a copy of the model's newest version (from a temporary folder: the phases add versions)
as its own process on free loopback ports, with the server's default limits, and runs:
1. good load: `--requests` row-format requests (`--batch` texts each, from the fortunes when
   installed) from `--clients` threads, every answer checked against the same SavedModel run in
   this process (labels equal, probabilities within 1e-5);
2. mixed load: `--mixed-requests` requests from `--mixed-clients` threads, every `--bad-every`-th
   one good and checked as above, the others drawn in turn from `HOSTILE` (each must get its status), plus
   `--half-sent` connections that send half a request and stall; reports requests lost (no
   answer), 5xx answers, wrong answers, p50/p99 of the good requests, and the memory (RSS) of the
   server with its worker processes before and after;
3. version changes: publishes `--version-changes` new versions one after another (copy, then
   rename, as exports do) with `--num-versions 1`, waits for each to be served, and reports the
   server's RSS (with its workers) after 2 changes and after the last.
Without `--path` and without a trained export it serves an untrained tiny classifier (said in the
JSON). Prints one JSON line last.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from tests.serving.helpers import add_version, call, running_server, tree_rss_mb, wait_until  # noqa: E402

HOSTILE = [  # (name, URL with {model}/{root}/{name}, raw body, content type, expected status)
    ("malformed JSON", "{model}:predict", b'{"instances": [', "application/json", 400),
    ("50,000 deep", "{model}:predict", b"[" * 50_000 + b"]" * 50_000, "application/x-www-form-urlencoded", 400),
    ("4,301-digit integer", "{model}/versions/1:predict", b'{"instances": [' + b"9" * 4301 + b"]}", "text/plain", 400),
    ("signature_name list", "{model}:predict", b'{"signature_name": ["serving_default"], "instances": ["a"]}', "application/json", 400),
    ("non-ASCII version", "{model}/versions/%C2%B2:predict", b'{"instances": ["a"]}', "application/json", 404),
    ("unknown version", "{model}/versions/99:predict", b'{"instances": ["a"]}', "application/json", 404),
    ("KServe unload", "{root}/v2/repository/models/{name}/unload", b"{}", "application/json", 404),
    ("empty string", "{model}:predict", b'{"instances": ["ok", ""]}', "application/json", 400),
    ("non-UTF-8 b64", "{model}:predict", b'{"instances": [{"b64": "//4="}]}', "application/json", 400),
    ("too many instances", "{model}:predict", json.dumps({"instances": ["a"] * 300}).encode(), "application/json", 413),
    ("form body", "{model}:predict", b"instances=a", "application/x-www-form-urlencoded", 400),
    # valid, but 7 MB: cut to the context in the graph, so it must not slow the others down
    ("7 MB prompt", "{model}:predict", json.dumps({"instances": [("the cat sat on the mat. " * 300_000)[: 7 * 1024 * 1024]]}).encode(),
     "application/json", 200),
]


def texts(count):
    try:
        from keras_moe.data.text_classification import load_fortunes

        items = load_fortunes(categories=None)[0]
    except Exception:  # fortunes not installed: short built-in texts
        items = [f"a fortune about item {i}: the cat sat on the mat" for i in range(64)]
    rng = np.random.default_rng(0)
    return [items[i] for i in rng.choice(len(items), size=count, replace=len(items) < count)]


def model_version(path, scratch):
    """`(newest SavedModel version folder, description)`; an untrained tiny one is exported to `scratch`."""
    from keras_moe.export import export_saved_model, list_versions

    default = os.path.join(ROOT, "saved_models", "switch_classifier")
    if path or os.path.isdir(default):
        path = os.path.abspath(path or default)
        return os.path.join(path, str(list_versions(path)[-1])), "given" if path != default else "trained switch_classifier"
    from tests.export.tiny import tiny_classifier

    return export_saved_model(tiny_classifier(), scratch, "tiny_classifier"), "untrained tiny classifier"


class Checker:
    """Good request bodies and their expected answers, from the SavedModel run in this process."""

    def __init__(self, version_folder, batch):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401

        signature = tf.saved_model.load(version_folder).signatures["serving_default"]
        pool = texts(batch * 50)
        self.bodies = [pool[i * batch:(i + 1) * batch] for i in range(50)]
        self.expected = [{k: v.numpy() for k, v in signature(text=tf.constant(b)).items()} for b in self.bodies]

    def good(self, url, i):
        body, want = self.bodies[i % len(self.bodies)], self.expected[i % len(self.bodies)]
        start = time.perf_counter()
        status, payload = call(url + ":predict", {"instances": body}, timeout=120)
        seconds = time.perf_counter() - start
        if status != 200:
            return status, seconds, False
        got = payload.get("predictions", [])
        ok = len(got) == len(body) and all(
            p["labels"] == want["labels"][j].decode() and np.allclose(p["probabilities"], want["probabilities"][j], atol=1e-5)
            for j, p in enumerate(got))
        return status, seconds, ok


def send(url, i, checker, bad_every):
    """One request of the mixed phase -> `(case, status or None if lost, seconds, answered as it should)`."""
    try:
        if i % bad_every == 0:
            return ("good", *checker.good(url, i))
        case, route, raw, content_type, expected = HOSTILE[(i // bad_every) % len(HOSTILE)]
        target = route.format(model=url, root=url.split("/v1/")[0], name=url.rsplit("/", 1)[1])
        start = time.perf_counter()
        status, _ = call(target, raw=raw, content_type=content_type, timeout=120)
        return case, status, time.perf_counter() - start, status == expected
    except (TimeoutError, urllib.error.URLError, ConnectionError, json.JSONDecodeError):
        return "lost", None, 0.0, False


def half_sent(port, stop):
    """Sends half a request, stalls, and counts how often the server drops it."""
    dropped = 0
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"POST /v1/models/x:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            try:
                if sock.recv(1) == b"":
                    dropped += 1
            except OSError:
                pass
    return dropped


def percentile(values, q):
    values = sorted(values)
    return round(values[int(q * (len(values) - 1))] * 1000, 1) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", help="model folder saved_models/<name> (integer versions inside)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1, help="texts per good request")
    parser.add_argument("--mixed-requests", type=int, default=2000)
    parser.add_argument("--mixed-clients", type=int, default=16)
    parser.add_argument("--bad-every", type=int, default=2, help="every n-th mixed request is good, the others hostile")
    parser.add_argument("--half-sent", type=int, default=4, help="connections that send half a request and stall")
    parser.add_argument("--version-changes", type=int, default=20)
    args = parser.parse_args()

    work = tempfile.mkdtemp()
    try:
        source, which = model_version(args.path, work)
        checker = Checker(source, args.batch)
        folder = os.path.join(work, "fortunes_under_load")
        shutil.copytree(source, os.path.join(folder, "1"))
        flags = ["--num-versions", "1", "--poll-seconds", "0.5", "--request-seconds", "10"]
        result = {"benchmark": "serve_load", "model": which, "source": source}
        with running_server(folder, *flags, log_path=os.path.join(work, "server.log")) as (url, process, port, _, _):
            checker.good(url, 0)  # warm-up
            # 1. Good load.
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                good = list(pool.map(lambda i: checker.good(url, i), range(args.requests)))
            wall = time.perf_counter() - start
            seconds = [s for _, s, _ in good]
            result["good_load"] = {
                "requests": args.requests, "clients": args.clients, "instances_per_request": args.batch,
                "correct": sum(ok for *_, ok in good), "errors": sum(status != 200 for status, *_ in good),
                "requests_per_second": round(args.requests / wall, 1),
                "p50_ms": round(statistics.median(seconds) * 1000, 1), "p99_ms": percentile(seconds, 0.99),
            }
            # 2. Mixed good and bad load, with half-sent connections alongside.
            rss_before = tree_rss_mb(process.pid)
            stop = threading.Event()
            with concurrent.futures.ThreadPoolExecutor(args.half_sent or 1) as stallers:
                stalled = [stallers.submit(half_sent, port, stop) for _ in range(args.half_sent)]
                with concurrent.futures.ThreadPoolExecutor(args.mixed_clients) as pool:
                    mixed = list(pool.map(lambda i: send(url, i, checker, args.bad_every), range(args.mixed_requests)))
                stop.set()
                dropped = sum(f.result() for f in stalled)
            rss_after = tree_rss_mb(process.pid)
            good_seconds = [s for kind, _, s, _ in mixed if kind == "good"]
            result["mixed_load"] = {
                "requests": args.mixed_requests, "clients": args.mixed_clients,
                "good": sum(kind == "good" for kind, *_ in mixed), "hostile": sum(kind not in ("good", "lost") for kind, *_ in mixed),
                "lost": sum(kind == "lost" for kind, *_ in mixed),
                "5xx": sum(status is not None and status >= 500 for _, status, _, _ in mixed),
                "wrong_answers": sum(kind != "lost" and not ok for kind, _, _, ok in mixed),
                "wrong_by_case": sorted({kind for kind, _, _, ok in mixed if kind != "lost" and not ok}),
                "good_p50_ms": percentile(good_seconds, 0.5), "good_p99_ms": percentile(good_seconds, 0.99),
                "half_sent_connections_dropped": dropped,
                "rss_mb_before": round(rss_before), "rss_mb_after": round(rss_after),
            }
            # 3. Version changes.
            rss = {}
            for change in range(1, args.version_changes + 1):
                add_version(folder, change, change + 1)
                wait_until(lambda: [s["version"] for s in call(url)[1]["model_version_status"]] == [str(change + 1)]  # noqa: B023 (called within the iteration)
                           and call(url)[1]["model_version_status"][0]["state"] == "AVAILABLE", what=f"version {change + 1}")
                assert checker.good(url, change)[2], f"version {change + 1} answered wrongly"
                shutil.rmtree(os.path.join(folder, str(change)))  # keep the disk use flat
                rss[change] = tree_rss_mb(process.pid)
            if args.version_changes >= 2:
                result["version_changes"] = {
                    "changes": args.version_changes, "rss_mb_after_2": round(rss[2]),
                    f"rss_mb_after_{args.version_changes}": round(rss[args.version_changes]),
                    "change_percent": round(100 * (rss[args.version_changes] - rss[2]) / rss[2], 2),
                    "rss_mb_each": [round(rss[c]) for c in sorted(rss)],
                }
        with open(os.path.join(work, "server.log")) as handle:
            result["server_log_tracebacks"] = handle.read().count("Traceback")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
