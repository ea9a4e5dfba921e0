"""Tokens per second of `model.fit` for the MoE LM and its equal-active dense LM (the recipes' models).

    python benchmarks/fit_throughput.py [--steps 30] [--dispatch auto]     # KERAS_BACKEND=jax for JAX

Times training steps after a warm-up epoch (compilation excluded), median over steps. Target: the
MoE LM at least 0.9x the dense LM's tokens/s (issue 13). Prints one JSON line last.
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


def tokens_per_second(recipe, args):
    overrides = [f"recipe={recipe}", f"model.backbone.dispatch={args.dispatch}"]
    cfg = compose_config(overrides)
    keras.utils.set_random_seed(0)
    data, model = build_data(cfg), build_model(cfg)
    model.fit(data.train_dataset(), epochs=1, steps_per_epoch=3, verbose=0)  # compile and warm up
    timer = StepTimer()
    model.fit(data.train_dataset(), epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[timer])
    step = statistics.median(timer.times)
    tokens = cfg.data.batch_size * cfg.data.sequence_length
    return {"step_ms": round(1000 * step, 1), "tokens_per_second": round(tokens / step)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--dispatch", default="auto", choices=sorted(DISPATCH_MODES))
    args = parser.parse_args()
    results = {"backend": keras.backend.backend(), "dispatch": args.dispatch}
    for name, recipe in (("moe", "shakespeare_moe"), ("dense_equal_active", "shakespeare_dense")):
        results[name] = tokens_per_second(recipe, args)
        print(name, results[name], flush=True)
    moe, dense = results["moe"]["tokens_per_second"], results["dense_equal_active"]["tokens_per_second"]
    results["moe_over_dense_throughput"] = round(moe / dense, 3)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
