"""`TF_CONFIG` (the cluster description of `MultiWorkerMirroredStrategy`): validate, and write one per worker.

A valid value, for worker 0 of two:

    {"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}
"""

import json
import os
import socket


def parse_tf_config(text=None):
    """Parses and checks `TF_CONFIG` (default: the environment variable); returns the dict.

    Raises `ValueError` naming the bad value: missing or non-JSON text, no `cluster.worker` list,
    an address that is not `host:port`, or a `task` whose type/index is not in the cluster.
    """
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text:
        raise ValueError("`TF_CONFIG` is not set: multi-worker training needs the cluster, e.g. "
                         '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}} '
                         "(or start the workers with `keras-moe launch --workers N -- train ...`).")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"`TF_CONFIG` is not valid JSON ({error}). Received: TF_CONFIG={text!r}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker"), list) or not cluster["worker"]:
        raise ValueError(f"`TF_CONFIG` needs a non-empty list `cluster.worker`. Received: TF_CONFIG={text!r}")
    for job, addresses in cluster.items():
        for address in addresses if isinstance(addresses, list) else [addresses]:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"`TF_CONFIG` address {address!r} in `cluster.{job}` is not `host:port`.")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ValueError(f"`TF_CONFIG.task.type` must be one of {sorted(cluster)}. Received: task={task!r}")
    index, size = task.get("index"), len(cluster[task["type"]])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < size:
        raise ValueError(f"`TF_CONFIG.task.index` must be an int in [0, {size}) for {size} "
                         f"{task['type']}(s). Received: index={index!r}")
    return config


def free_loopback_addresses(count):
    """`count` distinct `127.0.0.1:port` addresses whose ports were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_tf_configs(addresses):
    """One `TF_CONFIG` JSON string per worker of the cluster `addresses` (worker 0 is the chief)."""
    cluster = {"worker": list(addresses)}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(len(addresses))]
