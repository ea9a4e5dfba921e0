"""Forward+backward time of `MoELayer` against an equal-active dense FFN and keras-hub's Mixtral block.

Shapes from the issue: 4,096 tokens, hidden 256, expert FFN 512, top-2, 8/32/64 experts; the dense
SwiGLU FFN has the same active parameters (intermediate `top_k * 512`). Both dispatch modes.

    KERAS_BACKEND=tensorflow python benchmarks/moe_layer.py            # the CPU figures
    KERAS_BACKEND=jax python benchmarks/moe_layer.py --dtype bfloat16  # e.g. on a GPU

Prints a table, then one JSON line with every time and ratio.
"""

import argparse
import inspect
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_moe  # noqa: E402


def first(outputs):
    """keras-hub's Mixtral block returns `(outputs, router_logits)`."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def make_step(layer, x):
    """A compiled function computing the loss and the gradients of every weight and of the input."""
    backend = keras.backend.backend()
    layer(x[:8])  # build
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=False)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = first(layer(x, training=True))
                loss = tf.reduce_sum(tf.cast(y, "float32") ** 2)
            return tape.gradient(loss, [x] + layer.trainable_variables)

        xt = tf.constant(x)
        return lambda: [g.numpy() for g in step(xt)[:1]]
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        kwargs = {"training": True} if "training" in inspect.signature(layer.call).parameters else {}

        def loss_fn(trainable, x):
            y, _ = layer.stateless_call(trainable, non_trainable, x, **kwargs)
            y = first(y)
            return (y.astype("float32") ** 2).sum()

        grad = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))
        xj = jax.numpy.asarray(x)
        return lambda: jax.block_until_ready(grad(trainable, xj))
    raise ValueError(f"Unsupported backend for this benchmark: {backend!r}")


def time_steps(steps, repeats, warmup=2):
    """Median seconds per step. Rounds interleave the layers so that drift in machine speed hits all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def build_layers(num_experts, args):
    from keras_hub.src.models.mixtral.mixtral_decoder import MixtralSparseMoeBlock

    router = {"class_name": "top_k", "config": {"top_k": args.top_k}}
    layers = {"dense": keras_moe.FeedForward(args.top_k * args.intermediate_dim, activation="swiglu")}
    if not args.only:
        layers["capacity"] = keras_moe.MoELayer(num_experts, args.intermediate_dim, router=router, dispatch="capacity",
                                                train_capacity_factor=args.capacity_factor)
        layers["dropless"] = keras_moe.MoELayer(num_experts, args.intermediate_dim, router=router, dispatch="dropless")
    for mode in args.modes:
        layers[mode] = keras_moe.MoELayer(num_experts, args.intermediate_dim, router=router, dispatch=mode)
    if args.keras_hub and num_experts <= args.keras_hub_max_experts:
        layers["keras_hub"] = MixtralSparseMoeBlock(args.hidden_dim, args.intermediate_dim, num_experts, top_k=args.top_k)
    return layers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--intermediate-dim", type=int, default=512)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--capacity-factor", type=float, default=1.25)
    parser.add_argument("--modes", nargs="*", default=[], help="more dispatch modes to time, e.g. blocked fitted auto")
    parser.add_argument("--only", action="store_true", help="time only the dense FFN and --modes (not capacity, dropless)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16 (mixed precision)")
    parser.add_argument("--no-keras-hub", dest="keras_hub", action="store_false")
    parser.add_argument("--keras-hub-max-experts", type=int, default=32)
    args = parser.parse_args()
    if args.dtype == "bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).standard_normal((1, args.tokens, args.hidden_dim)).astype("float32")
    results = {"backend": keras.backend.backend(), "dtype": args.dtype, "tokens": args.tokens,
               "hidden_dim": args.hidden_dim, "intermediate_dim": args.intermediate_dim, "top_k": args.top_k,
               "capacity_factor": args.capacity_factor, "configs": {}}
    dense_flops = 2 * 3 * args.tokens * args.hidden_dim * args.top_k * args.intermediate_dim * 3  # fwd + 2x bwd
    for num_experts in args.experts:
        steps = {name: make_step(layer, x) for name, layer in build_layers(num_experts, args).items()}
        times = time_steps(steps, args.repeats)
        row = {f"{name}_ms": round(1000 * t, 2) for name, t in times.items()}
        for name in ("capacity", "dropless", *args.modes, "keras_hub"):
            if name in times:
                row[f"{name}_over_dense"] = round(times[name] / times["dense"], 3)
        best = min(t for name, t in times.items() if name not in ("dense", "keras_hub"))
        row["best_over_dense"] = round(best / times["dense"], 3)
        if "keras_hub" in times:
            row["keras_hub_over_best"] = round(times["keras_hub"] / best, 2)
        row["dense_tflops"] = round(dense_flops / times["dense"] / 1e12, 3)
        results["configs"][str(num_experts)] = row
        print(f"experts={num_experts}: {row}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
