"""How many ops TensorFlow's graph runs per decoding step: the default MoE LM against its equal-active dense LM.

    python benchmarks/decode_ops.py [--batch 1] [--dispatch auto]

In TensorFlow's graph executor (how `generate` runs on CPU) every op costs a few microseconds
whatever its size, so at the default LM's width a decoding step's op count is most of its cost.
Traces one `call_with_cache` step of each model (routing statistics off, as in `generate`), keeps
the ops its outputs depend on (constants, placeholders and identities left out) and counts them,
for the whole step and per FFN/MoE layer (block 0). Grappler folds some of them (shape ops of
static shapes) before running, so the counts are an upper bound on what runs; their ratio is what
`benchmarks/decode_step.py` measures in time. Prints one JSON line last.
"""

import argparse
import collections
import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SKIPPED = ("Const", "Placeholder", "Identity", "NoOp")


def live_ops(graph):
    """The ops the graph's outputs depend on, in graph order."""
    seen, stack = set(), [t.op for t in graph.outputs]
    while stack:
        op = stack.pop()
        if op.name not in seen:
            seen.add(op.name)
            stack += [t.op for t in op.inputs] + list(op.control_inputs)
    return [op for op in graph.get_operations() if op.name in seen and op.type not in SKIPPED]


def count(model, dispatch, batch, length):
    import tensorflow as tf
    from decode_step import build

    from keras_moe.layers import routing_statistics

    lm = build(model, dispatch, length)
    backbone = lm.backbone
    cache = tf.zeros([batch, backbone.num_layers, 2, length, backbone.num_kv_heads, backbone.head_dim])
    token_ids = tf.zeros([batch, 1], "int32")
    with routing_statistics(lm, enabled=False):
        graph = tf.function(lambda cache, index: lm.call_with_cache(token_ids, cache, index)).get_concrete_function(
            cache, tf.constant(0)
        ).graph
    ops = live_ops(graph)
    feed_forward = [op for op in ops if op.name.split("/")[0].startswith("block_0") and op.name.split("/")[1].startswith(("moe", "ffn"))]
    return {
        "step_ops": len(ops),
        "feed_forward_ops_per_layer": len(feed_forward),
        "feed_forward_op_types": dict(collections.Counter(op.type for op in feed_forward)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dispatch", default="auto")
    parser.add_argument("--length", type=int, default=128, help="the KV cache's length")
    args = parser.parse_args()
    import keras

    if keras.backend.backend() != "tensorflow":
        backend = keras.backend.backend()
        raise SystemExit(f"decode_ops.py counts TensorFlow graph ops; run it with KERAS_BACKEND=tensorflow (got {backend!r}).")
    dense = count("dense_lm_small", None, args.batch, args.length)
    moe = count("moe_lm_small", args.dispatch, args.batch, args.length)
    for name, figures in (("dense", dense), ("moe", moe)):
        per_layer = figures["feed_forward_ops_per_layer"]
        print(name, figures["step_ops"], "ops a step,", per_layer, "per FFN layer:", figures["feed_forward_op_types"])
    print(json.dumps({"benchmark": "decode_ops", "batch": args.batch, "dispatch": args.dispatch, "dense": dense, "moe": moe,
                      "dense_over_moe_ops": round(dense["step_ops"] / moe["step_ops"], 3)}))


if __name__ == "__main__":
    main()
