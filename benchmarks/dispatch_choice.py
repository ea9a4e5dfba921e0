"""Which exact dispatch mode is fastest for how many tokens: the measurements behind `dispatch="auto"`.

    python benchmarks/dispatch_choice.py [--backends tensorflow jax] [--tokens 1 2 4 8 16 64 256 1024 4096]

Times a compiled forward pass (inference) and forward+backward (training) of one `MoELayer` per
exact mode (dropless, blocked, gathered, all_experts) at each token count, both backends, each in its
own process; prints the fastest mode per (backend, pass, token count), what `auto` picks there and
the ratio of auto's time to the fastest, then one JSON line. Shapes: hidden 128, expert FFN 128,
8 experts, top-2 (the default LM's layer) unless given.
"""

import argparse
import json
import os
import statistics
import sys
import time

from per_backend import run_per_backend

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
MODES = ("dropless", "blocked", "gathered", "all_experts")


def compiled(layer, x, train):
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def forward(x):
            return layer(x)

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=True) ** 2)
            return tape.gradient(loss, [x] + layer.trainable_variables)

        xt = tf.constant(x)
        fn = step if train else forward
        return lambda: [tf.convert_to_tensor(t).numpy() for t in tf.nest.flatten(fn(xt))]
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def forward(trainable, x):
        return layer.stateless_call(trainable, non_trainable, x)[0]

    def loss(trainable, x):
        return (layer.stateless_call(trainable, non_trainable, x, training=True)[0] ** 2).sum()

    fn = jax.jit(jax.grad(loss, argnums=(0, 1)) if train else forward)
    xj = jax.numpy.asarray(x)
    return lambda: jax.block_until_ready(fn(trainable, xj))


def measure(args):
    import keras
    import numpy as np

    import keras_moe
    from keras_moe.dispatch import auto_mode

    router = {"class_name": "top_k", "config": {"top_k": args.top_k}}
    rows = []
    for train in (False, True):
        for tokens in args.tokens:
            keras.utils.set_random_seed(0)
            x = np.random.default_rng(0).standard_normal((1, tokens, args.hidden_dim)).astype("float32")
            layers = {mode: keras_moe.MoELayer(args.num_experts, args.intermediate_dim, router=router, dispatch=mode)
                      for mode in MODES}
            for layer in layers.values():
                layer(x[:, :1])
            weights = layers["dropless"].get_weights()
            steps = {}
            for mode, layer in layers.items():
                layer.set_weights(weights)
                steps[mode] = compiled(layer, x, train)
            for step in steps.values():
                step()
                step()
            times = {mode: [] for mode in steps}
            repeats = max(3, min(args.repeats, int(args.repeats * 256 / tokens)))
            for _ in range(repeats):
                for mode, step in steps.items():
                    start = time.perf_counter()
                    step()
                    times[mode].append(time.perf_counter() - start)
            ms = {mode: round(1000 * statistics.median(t), 3) for mode, t in times.items()}
            fastest = min(ms, key=ms.get)
            picked = auto_mode(tokens, args.top_k, args.num_experts)
            row = {"backend": keras.backend.backend(), "pass": "train" if train else "inference", "tokens": tokens,
                   "ms": ms, "fastest": fastest, "auto": picked, "auto_over_fastest": round(ms[picked] / ms[fastest], 3)}
            print(row, file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64, 256, 1024, 4096])
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--intermediate-dim", type=int, default=128)
    parser.add_argument("--num-experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args)))
        return
    results = {"hidden_dim": args.hidden_dim, "intermediate_dim": args.intermediate_dim,
               "num_experts": args.num_experts, "top_k": args.top_k, "rows": []}
    for _, rows in run_per_backend(__file__, args.backends):
        for row in rows:
            print(f"{row['backend']:10s} {row['pass']:9s} t={row['tokens']:5d} fastest={row['fastest']:11s} "
                  f"auto={row['auto']:11s} x{row['auto_over_fastest']}  {row['ms']}")
            results["rows"].append(row)
    worst = max(row["auto_over_fastest"] for row in results["rows"])
    results["auto_worst_over_fastest"] = worst
    print(json.dumps(results))


if __name__ == "__main__":
    main()
