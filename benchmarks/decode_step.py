"""The decoding step alone: the default MoE LM in each exact dispatch mode against its equal-active dense LM.

    python benchmarks/decode_step.py [--backends tensorflow jax] [--batches 1 8] [--modes dropless gathered all_experts blocked]

`generate` also prefills the prompt window and runs the sampler; this times only what `dispatch="auto"`
chooses for: `--steps` one-token steps of `call_with_cache` (all 4 layers, KV cache, logits) in one
compiled loop (`tf.function` + `tf.while_loop` on TensorFlow, without XLA as `generate` runs on CPU;
`jax.jit` + `fori_loop` on JAX), untrained models from the recipes' configs (`model=moe_lm_small`,
`model=dense_lm_small`). Rounds interleave the models; the median per step is reported, and each mode's
speed as a ratio to the dense model's (1.0 = dense speed), from the medians and from each one's best
repeat (steadier on a shared machine). Each backend runs in its own process. The
decoding rows of `keras_moe/dispatch/choose.py` come from this benchmark: a lone layer keeps its
experts' weights in cache, the whole model does not. Prints one JSON line last.
"""

import argparse
import json
import os
import statistics
import time

from per_backend import run_per_backend

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build(model, dispatch=None, length=128):
    from keras_moe.training import compose_config, instantiate

    overrides = [f"model={model}", f"data.sequence_length={length}"]
    if dispatch:
        overrides.append(f"model.backbone.dispatch={dispatch}")
    return instantiate(compose_config(overrides).model, "model")


def tensorflow_loop(lm, batch, steps, length):
    import tensorflow as tf

    backbone = lm.backbone
    cache = tf.zeros([batch, backbone.num_layers, 2, length, backbone.num_kv_heads, backbone.head_dim])
    token_ids = tf.zeros([batch, 1], "int32")

    @tf.function
    def loop(cache):
        def body(index, cache, total):
            _, hidden, cache = lm.call_with_cache(token_ids, cache, index)
            return index + 1, cache, total + hidden[:, 0, :1]

        return tf.while_loop(lambda index, *_: index < steps, body, (tf.constant(0), cache, tf.zeros([batch, 1])))[2]

    return lambda: loop(cache).numpy()


def jax_loop(lm, batch, steps, length):
    import jax
    import jax.numpy as jnp
    import keras

    backbone = lm.backbone
    trainable = [v.value for v in lm.trainable_variables]
    non_trainable = [v.value for v in lm.non_trainable_variables]
    cache = jnp.zeros([batch, backbone.num_layers, 2, length, backbone.num_kv_heads, backbone.head_dim])
    token_ids = jnp.zeros([batch, 1], "int32")

    @jax.jit
    def loop(trainable, cache):
        def body(index, carry):
            cache, total = carry
            mapping = list(zip(lm.trainable_variables, trainable)) + list(zip(lm.non_trainable_variables, non_trainable))
            with keras.StatelessScope(state_mapping=mapping):
                _, hidden, cache = lm.call_with_cache(token_ids, cache, index)
            return cache, total + hidden[:, 0, :1]

        return jax.lax.fori_loop(0, steps, body, (cache, jnp.zeros([batch, 1])))[1]

    return lambda: jax.block_until_ready(loop(trainable, cache))


def measure(args):
    import keras

    from keras_moe.layers import routing_statistics

    keras.utils.set_random_seed(0)
    models = {"dense": build("dense_lm_small", length=args.length)}
    models.update({mode: build("moe_lm_small", mode, args.length) for mode in args.modes})
    make_loop = jax_loop if keras.backend.backend() == "jax" else tensorflow_loop
    results = {}
    for batch in args.batches:
        loops = {}
        for name, lm in models.items():
            with routing_statistics(lm, enabled=False):  # as in `generate`
                loops[name] = make_loop(lm, batch, args.steps, args.length)
                loops[name]()  # trace and compile
        times = {name: [] for name in loops}
        for _ in range(args.repeats):
            for name, run in loops.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        step_us = {name: 1e6 * statistics.median(t) / args.steps for name, t in times.items()}
        best_us = {name: 1e6 * min(t) / args.steps for name, t in times.items()}
        results[f"batch_{batch}"] = {
            "step_us": {name: round(us, 1) for name, us in step_us.items()},
            "speed_over_dense": {name: round(step_us["dense"] / us, 3) for name, us in step_us.items() if name != "dense"},
            # the least disturbed repeat of each (other jobs on the machine only ever add time)
            "speed_over_dense_best": {name: round(best_us["dense"] / us, 3) for name, us in best_us.items() if name != "dense"},
        }
    return {"backend": keras.backend.backend(), "results": results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="*", default=["tensorflow", "jax"])
    parser.add_argument("--modes", nargs="*", default=["dropless", "gathered", "all_experts", "blocked"])
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--length", type=int, default=128, help="the KV cache's length")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args)))
        return
    figures = {}
    for backend, figures[backend] in run_per_backend(__file__, args.backends):
        print(backend, json.dumps(figures[backend]), flush=True)
    print(json.dumps({"benchmark": "decode_step", "steps": args.steps, "figures": figures}))


if __name__ == "__main__":
    main()
