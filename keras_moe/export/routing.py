"""The `routing` signatures' outputs: each MoE layer's routing decisions, reshaped per position."""

import tensorflow as tf


def routing_outputs(routings, shape):
    """`{"<layer>_expert_ids": int32 [b, s, k], "<layer>_expert_weights": float32 [b, s, k]}`.

    `routings`: `{MoE layer name: routing object}` (what a backbone's `call_with_routing` returns);
    `shape`: `[b, s]`. Each routing family reports its own decisions (`decisions()`): the chosen
    experts and combine weights for token choice; the most probable expert (`k = 1`) for expert
    choice and Soft MoE.
    """
    outputs = {}
    for name, routing in routings.items():
        ids, weights = routing.decisions()
        k = tf.shape(ids)[-1]
        outputs[f"{name}_expert_ids"] = tf.reshape(tf.cast(ids, tf.int32), tf.concat([shape, [k]], 0))
        outputs[f"{name}_expert_weights"] = tf.reshape(tf.cast(weights, tf.float32), tf.concat([shape, [k]], 0))
    return outputs
