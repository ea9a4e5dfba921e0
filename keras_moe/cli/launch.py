"""`keras-moe launch`: start N `MultiWorkerMirroredStrategy` workers on this host (loopback only).

    keras-moe launch --workers 2 -- train model=moe_lm_tiny trainer=smoke

Each worker is `keras-moe <command> ... strategy=multi_worker_mirrored` with its own `TF_CONFIG`
(cluster of `127.0.0.1:<free port>` addresses; worker 0 is the chief). The chief writes to the run's
`output_dir`; worker i > 0 writes to `<output_dir>/worker_<i>` and does not export, so workers never
write the same file. Output lines are prefixed `[worker i]`. When one worker fails the others are
stopped (they would wait on collectives forever); the exit code is the first non-zero one, else 0.
For several hosts, set `TF_CONFIG` on each host yourself (docs/scaling.md).
"""

import argparse
import os
import subprocess
import sys
import threading

from keras_moe.distribution.tf_config import free_loopback_addresses, worker_tf_configs

USAGE = "keras-moe launch --workers N [--timeout SECONDS] -- train [key=value ...]"


def parse_args(argv):
    argv = list(argv)
    if "--" not in argv:
        raise SystemExit(f"usage: {USAGE}\n(missing `--` before the command to run on each worker)")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="keras-moe launch", usage=USAGE)
    parser.add_argument("--workers", type=int, required=True, help="worker processes on this host (>= 1)")
    parser.add_argument("--timeout", type=float, default=None, help="stop every worker after this many seconds")
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1:]
    if args.workers < 1:
        raise SystemExit(f"`--workers` must be >= 1. Received: --workers={args.workers}")
    if not args.command or args.command[0] != "train":
        raise SystemExit(f"`keras-moe launch` runs `train` on each worker. Received: {' '.join(args.command) or '(nothing)'}")
    if any(a in ("-m", "--multirun") for a in args.command):
        raise SystemExit("`keras-moe launch` runs one job; multirun sweeps (-m) are not supported.")
    return args


def worker_commands(command, workers):
    """The argv of each worker: `strategy=multi_worker_mirrored` unless given; separate outputs."""
    from keras_moe.training.config import compose_config

    overrides = command[1:]
    if not any(o.startswith("strategy=") for o in overrides):
        overrides = overrides + ["strategy=multi_worker_mirrored"]
    output_dir = os.path.abspath(str(compose_config(overrides).output_dir))
    base = [sys.executable, "-m", "keras_moe.cli.main", command[0]] + overrides
    commands = [base + [f"output_dir={output_dir}"]]
    for index in range(1, workers):
        commands.append(base + [f"output_dir={os.path.join(output_dir, f'worker_{index}')}", "export.enabled=false"])
    return commands


def _relay(stream, prefix):
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"{prefix}{line}")
        sys.stdout.flush()


def main(argv):
    args = parse_args(argv)
    commands = worker_commands(args.command, args.workers)
    configs = worker_tf_configs(free_loopback_addresses(args.workers))
    processes, relays = [], []
    try:
        for index, (command, tf_config) in enumerate(zip(commands, configs)):
            env = dict(os.environ, TF_CONFIG=tf_config, KERAS_BACKEND="tensorflow")
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            processes.append(process)
            relay = threading.Thread(target=_relay, args=(process.stdout, f"[worker {index}] "), daemon=True)
            relay.start()
            relays.append(relay)
        return _wait(processes, args.timeout)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        for relay in relays:
            relay.join(timeout=5)


def _wait(processes, timeout):
    """First non-zero exit code (stopping the rest), else 0; 124 when `timeout` runs out."""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in processes]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            print(f"keras-moe launch: a worker exited with code {failed[0]}; stopping the others.", file=sys.stderr)
            return failed[0]
        if all(c == 0 for c in codes):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            print(f"keras-moe launch: --timeout {timeout} s reached; stopping every worker.", file=sys.stderr)
            return 124
        time.sleep(0.2)
