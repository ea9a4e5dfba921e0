"""Steps/s of `model.fit` for the MoE LM under default, mirrored (2 logical CPUs) and 2-worker MWMS on loopback.

    python benchmarks/distributed_fit.py [--steps 20] [--batch-size 16] [--model moe_lm_tiny]

Each setting runs in fresh processes (device set-up precedes TensorFlow start-up); the global batch is
the same in all three, so steps/s compare the same work. Times steps after a warm-up epoch (tracing
excluded), median over steps. On this project's 2-core machine the two logical CPUs share the same
cores, so no speed-up is expected: the figure is the overhead of the strategy (all-reduces of the
gradients and of the routing statistics, replica threads, gRPC for MWMS). Prints one JSON line last.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(args):
    """One setting in this process: steps/s of `fit` (prints a JSON line)."""
    import keras
    import tensorflow as tf

    from keras_moe.training import strategies
    from keras_moe.training.building import build_model
    from keras_moe.training.config import compose_config

    strategy = {"default": strategies.default_strategy, "mirrored": lambda: strategies.mirrored_strategy(cpu_devices=2),
                "worker": strategies.multi_worker_mirrored_strategy}[args.mode]()
    cfg = compose_config([f"model={args.model}", f"data.sequence_length={args.sequence_length}",
                          f"data.batch_size={args.batch_size}", "trainer=smoke", "optimizer=adam"])
    keras.utils.set_random_seed(0)
    model = build_model(cfg, strategy)
    rng = __import__("numpy").random.default_rng(0)
    texts = ["".join(chr(c) for c in rng.integers(32, 127, args.sequence_length + 1)) for _ in range(args.batch_size * 4)]
    data = tf.data.Dataset.from_tensor_slices(texts).batch(args.batch_size, drop_remainder=True).repeat()

    class Timer(keras.callbacks.Callback):
        times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    model.fit(data, epochs=1, steps_per_epoch=3, verbose=0)  # trace and warm up
    timer = Timer()
    model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[timer])
    print(json.dumps({"mode": args.mode, "steps_per_second": 1.0 / statistics.median(timer.times),
                      "replicas": strategies.batch_splits(strategy)}))


def run(mode, args, tf_configs=None):
    """Runs `measure` in one process per worker; returns the chief's result."""
    command = [sys.executable, os.path.abspath(__file__), "--mode", mode, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--sequence-length", str(args.sequence_length), "--model", args.model]
    envs = [dict(os.environ, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="", **({"TF_CONFIG": c} if c else {}))
            for c in (tf_configs or [None])]
    processes = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for env in envs]
    try:
        outputs = [p.communicate(timeout=900) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(processes, outputs):
        if p.returncode:
            raise SystemExit(f"{mode} failed:\n{err[-3000:]}")
    return json.loads(outputs[0][0].strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["default", "mirrored", "worker"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--model", default="moe_lm_tiny")
    args = parser.parse_args()
    if args.mode:
        return measure(args)
    sys.path.insert(0, ROOT)
    from keras_moe.distribution.tf_config import free_loopback_addresses, worker_tf_configs

    results = {"default": run("default", args), "mirrored_2_logical_cpus": run("mirrored", args),
               "multi_worker_2_loopback": run("worker", args, worker_tf_configs(free_loopback_addresses(2)))}
    base = results["default"]["steps_per_second"]
    summary = {name: round(r["steps_per_second"], 2) for name, r in results.items()}
    summary.update({f"{name}_relative": round(r["steps_per_second"] / base, 3) for name, r in results.items() if name != "default"})
    summary.update({"model": args.model, "global_batch": args.batch_size, "sequence_length": args.sequence_length,
                    "steps": args.steps, "cpu_cores": os.cpu_count()})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
