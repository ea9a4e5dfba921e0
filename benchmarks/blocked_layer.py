"""Forward (inference) and forward+backward (training) time of one `MoELayer` with `dispatch="blocked"`.

    KERAS_BACKEND=jax python benchmarks/blocked_layer.py [--repeats 31]

Shapes: the default LM's layer at batch 1's and batch 8's prefill (77 and 616 tokens, hidden 128,
expert FFN 128, 8 experts) and at a training batch (4,096 tokens), and `moe_layer.py`'s shapes
(4,096 tokens, hidden 256, expert FFN 512, 8 and 64 experts); top-2 everywhere. The forward pass
runs with `training=False` (blocked skips unused padding blocks there), the gradient with
`training=True`. For an A/B of two commits, run it in a worktree of each with
`PYTHONPATH=<worktree>`, in turn. Median ms; prints one JSON line last.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_moe  # noqa: E402

SHAPES = [(77, 128, 128, 8), (616, 128, 128, 8), (4096, 128, 128, 8), (4096, 256, 512, 8), (4096, 256, 512, 64)]


def make_call(tokens, hidden, ffn, experts, training):
    """A compiled call: the loss (forward) or its gradients (training) of one blocked layer."""
    keras.utils.set_random_seed(0)
    layer = keras_moe.MoELayer(experts, ffn, router={"class_name": "top_k", "config": {"top_k": 2}}, dispatch="blocked")
    x = np.random.default_rng(0).standard_normal((tokens, hidden)).astype("float32")
    layer(x[:8])
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss(trainable, x):
            y, _ = layer.stateless_call(trainable, non_trainable, x, training=training)
            return (y**2).sum()

        fn = jax.jit(jax.grad(loss, argnums=(0, 1)) if training else loss)
        xj = jax.numpy.asarray(x)
        return lambda: jax.block_until_ready(fn(trainable, xj))
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=training) ** 2)
            if not training:
                return loss
            return [tf.convert_to_tensor(g) for g in tape.gradient(loss, [x] + layer.trainable_variables)]

        xt = tf.constant(x)
        return lambda: tf.nest.map_structure(lambda t: t.numpy(), step(xt))
    raise SystemExit(f"blocked_layer.py runs on JAX or TensorFlow (XLA), not {backend!r}.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31, help="timed calls under 1,000 tokens (5 above)")
    args = parser.parse_args()
    results = {}
    for tokens, hidden, ffn, experts in SHAPES:
        for training in (False, True):
            call = make_call(tokens, hidden, ffn, experts, training)
            call()  # compile
            times = []
            for _ in range(args.repeats if tokens < 1000 else 5):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            key = f"t{tokens}_h{hidden}_f{ffn}_e{experts}_{'fwd_bwd' if training else 'fwd'}_ms"
            results[key] = round(1000 * statistics.median(times), 3)
            print(key, results[key], flush=True)
    print(json.dumps({"benchmark": "blocked_layer", "backend": keras.backend.backend(), "figures": results}))


if __name__ == "__main__":
    main()
