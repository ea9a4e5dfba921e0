"""Tokens per second of `model.fit` for the MoE LM and its equal-active dense LM (the recipes' models).

    python benchmarks/fit_throughput.py [--rounds 5] [--steps 6] [--dispatch auto]     # KERAS_BACKEND=jax for JAX

Both models are built and warmed up first (compilation excluded); then `--rounds` rounds alternate
them, `--steps` training steps of each per round, so that drift in the machine's speed hits both
alike; the figure is the median step. Target: the MoE LM at least 0.9x the dense LM's tokens/s
(issue 13). Prints one JSON line last.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from keras_moe.routing import DISPATCH_MODES  # noqa: E402
from keras_moe.training.building import build_data, build_model  # noqa: E402
from keras_moe.training.config import compose_config  # noqa: E402


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def build(recipe, args):
    cfg = compose_config([f"recipe={recipe}", f"model.backbone.dispatch={args.dispatch}"])
    keras.utils.set_random_seed(0)
    data, model = build_data(cfg), build_model(cfg)
    model.fit(data.train_dataset(), epochs=1, steps_per_epoch=3, verbose=0)  # compile and warm up
    return cfg, data, model


def interleaved_step_times(runs, args):
    """`{name: [seconds per step]}`, the models taking turns for `args.rounds` rounds of `args.steps` steps."""
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (_, data, model) in runs.items():
            timer = StepTimer()
            model.fit(data.train_dataset(), epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[timer])
            times[name].extend(timer.times)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="steps of each model per round")
    parser.add_argument("--dispatch", default="auto", choices=sorted(DISPATCH_MODES))
    args = parser.parse_args()
    results = {"backend": keras.backend.backend(), "dispatch": args.dispatch}
    runs = {name: build(recipe, args) for name, recipe in (("moe", "shakespeare_moe"), ("dense_equal_active", "shakespeare_dense"))}
    for name, step_times in interleaved_step_times(runs, args).items():
        cfg = runs[name][0]
        step, tokens = statistics.median(step_times), cfg.data.batch_size * cfg.data.sequence_length
        results[name] = {"step_ms": round(1000 * step, 1), "tokens_per_second": round(tokens / step)}
        print(name, results[name], flush=True)
    moe, dense = results["moe"]["tokens_per_second"], results["dense_equal_active"]["tokens_per_second"]
    results["moe_over_dense_throughput"] = round(moe / dense, 3)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
