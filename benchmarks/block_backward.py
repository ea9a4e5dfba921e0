"""JAX: forward+backward of `MoELayer(dispatch="blocked")` with the block loop's own backward pass
(`keras_moe.experts.block_loop`) against autodiff of the same loop, side by side in one process.

    KERAS_BACKEND=jax python benchmarks/block_backward.py [--shapes 64,256,512 8,256,512 8,128,128]

Each shape is `experts,hidden,ffn` (4,096 tokens, top-2). Both layers and the dense FFN of the same
active width are compiled first, then timed in interleaved rounds (`--repeats`), so that drift in
the machine's speed hits all alike. The order in which the two layers are built and compiled
changes their times by up to 20% here, so `--order both` (default) runs each shape twice, once in
each order. Median ms; prints one JSON line last.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from moe_layer import make_step, time_steps  # noqa: E402

import keras_moe  # noqa: E402
from keras_moe.experts import block_loop  # noqa: E402

OWN_BACKWARD_MIN_EXPERTS = block_loop.OWN_BACKWARD_MIN_EXPERTS


def time_shape(experts, hidden, ffn, order, args):
    x = np.random.default_rng(0).standard_normal((args.tokens, hidden)).astype("float32")
    router = {"class_name": "top_k", "config": {"top_k": 2}}
    steps = {"dense": make_step(keras_moe.FeedForward(2 * ffn, activation="swiglu"), x)}
    steps["dense"]()
    for name in order:
        # The threshold is read while tracing: 1 forces the own backward pass, a huge one autodiff.
        block_loop.OWN_BACKWARD_MIN_EXPERTS = 1 if name == "own_backward" else 2**31
        steps[name] = make_step(keras_moe.MoELayer(experts, ffn, router=router, dispatch="blocked"), x)
        steps[name]()  # compile now, while this variant is set
    block_loop.OWN_BACKWARD_MIN_EXPERTS = OWN_BACKWARD_MIN_EXPERTS
    return {name: round(seconds * 1e3, 1) for name, seconds in time_steps(steps, args.repeats).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["64,256,512", "8,256,512", "8,128,128"])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--order", choices=["both", "own_first", "autodiff_first"], default="both")
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        raise SystemExit(f"block_backward.py times the JAX loop; KERAS_BACKEND={keras.backend.backend()!r}")
    orders = {"own_first": [["own_backward", "autodiff"]], "autodiff_first": [["autodiff", "own_backward"]]}
    orders = orders.get(args.order, orders["own_first"] + orders["autodiff_first"])
    results = []
    for shape in args.shapes:
        experts, hidden, ffn = (int(v) for v in shape.split(","))
        for order in orders:
            ms = time_shape(experts, hidden, ffn, order, args)
            row = {"experts": experts, "hidden": hidden, "ffn": ffn, "first": order[0], "ms": ms,
                   "own_over_autodiff": round(ms["own_backward"] / ms["autodiff"], 3)}
            print(f"e {experts:3d} h {hidden} f {ffn} ({order[0]} first): dense {ms['dense']} ms, own backward "
                  f"{ms['own_backward']} ms, autodiff {ms['autodiff']} ms", flush=True)
            results.append(row)
    print(json.dumps({"backend": "jax", "tokens": args.tokens, "results": results}))


if __name__ == "__main__":
    main()
