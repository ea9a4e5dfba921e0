"""Total and active parameters of an `MoETransformerBackbone` from its config, without allocating weights."""

import inspect

from keras_moe import routing
from keras_moe.experts.activations import is_gated
from keras_moe.models.moe_transformer.moe_transformer_backbone import MoETransformerBackbone, is_moe_block


def _defaults():
    params = inspect.signature(MoETransformerBackbone.__init__).parameters
    return {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}


def feed_forward_parameter_count(hidden_dim, intermediate_dim, activation):
    """Weights of one bias-free FFN: `h x f` (`h x 2f` gated) in, `f x h` out."""
    return hidden_dim * intermediate_dim * (2 if is_gated(activation) else 1) + intermediate_dim * hidden_dim


def backbone_parameter_count(**config):
    """Returns `{"total", "active", "per_block": [...]}` for a backbone config (the constructor's arguments).

    Matches `model.count_params()` and `keras_moe.count_params(model)` exactly; used to size published
    shapes such as Mixtral 8x7B (46.7B total, 12.9B active) on a laptop.
    """
    c = {**_defaults(), **config}
    unknown = set(config) - set(_defaults()) - {"vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim"}
    if unknown:
        raise ValueError(f"Unknown backbone arguments: {sorted(unknown)}")
    h, n = c["hidden_dim"], c["num_heads"]
    g = c["num_kv_heads"] or n
    d = h // n
    norm = h if c["normalization"] == "rms" else 2 * h
    embeddings = c["vocabulary_size"] * h * (1 if c["tie_embeddings"] else 2)
    if c["position_embedding"] == "learned":
        embeddings += c["max_sequence_length"] * h
    attention = h * n * d + 2 * h * g * d + n * d * h
    total = active = embeddings + norm  # + final norm
    per_block = []
    for i in range(c["num_layers"]):
        block_total = block_active = attention + 2 * norm
        if is_moe_block(i, c["num_experts"], c["num_dense_layers"], c["moe_layer_interval"]):
            router = routing.get(c["router"], num_experts=c["num_experts"], top_k=c["top_k"])
            experts = c["num_experts"] * feed_forward_parameter_count(h, c["intermediate_dim"], c["activation"])
            shared = 0
            if c["num_shared_experts"]:
                shared = feed_forward_parameter_count(h, c["intermediate_dim"] * c["num_shared_experts"], c["activation"])
            share = min(1.0, router.experts_per_token / c["num_experts"])
            block_total += router.parameter_count(h) + experts + shared
            block_active += router.parameter_count(h) + experts * share + shared
        else:
            ffn = feed_forward_parameter_count(h, c["dense_intermediate_dim"] or c["intermediate_dim"], c["activation"])
            block_total += ffn
            block_active += ffn
        per_block.append(int(block_total))
        total += block_total
        active += block_active
    return {"total": int(total), "active": int(round(active)), "per_block": per_block}
