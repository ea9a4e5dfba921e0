"""`MoETransformerBackbone.parameter_count` (composed from each layer's own count) against built backbones,
hand arithmetic, and Mixtral 8x7B; MoE block placement."""

import pytest

import keras_moe
from keras_moe.models import MoETransformerBackbone

backbone_parameter_count = MoETransformerBackbone.parameter_count

# Zero initialisers: the counts do not depend on values, and allocation stays cheap on JAX.
BASE = dict(vocabulary_size=64, num_layers=2, num_heads=4, hidden_dim=16, intermediate_dim=8, num_experts=4,
            kernel_initializer="zeros")

CONFIGS = {
    "mixtral_like": {},
    "layer_norm": dict(normalization="layer"),
    "learned_positions": dict(position_embedding="learned", max_sequence_length=32),
    "tied": dict(tie_embeddings=True),
    "gqa_one_kv_head": dict(num_kv_heads=1),
    "gqa_two_kv_heads": dict(num_kv_heads=2),
    "shared_experts": dict(num_shared_experts=2),
    "dense_first_interval_2": dict(num_layers=4, num_dense_layers=1, moe_layer_interval=2, dense_intermediate_dim=24),
    "interval_3": dict(num_layers=3, moe_layer_interval=3),
    "all_dense_layers": dict(num_dense_layers=2),
    "noisy_top_k": dict(router="noisy_top_k"),
    "switch": dict(router="switch"),
    "expert_choice": dict(router="expert_choice"),
    "expert_choice_3_experts": dict(router="expert_choice", num_experts=3),  # share 2/3: not integral
    "soft": dict(router="soft"),
    "sigmoid": dict(router="sigmoid"),
    "dense_gate": dict(router="dense"),
    "top_1": dict(router={"class_name": "top_k", "config": {"top_k": 1}}),
    "relu_experts": dict(activation="relu"),
    "dense_model": dict(num_experts=0),
    "everything": dict(normalization="layer", position_embedding="learned", max_sequence_length=16, tie_embeddings=True,
                       num_kv_heads=2, num_shared_experts=1, num_layers=3, num_dense_layers=1, activation="geglu"),
}


@pytest.mark.parametrize("overrides", list(CONFIGS.values()), ids=list(CONFIGS))
def test_formula_matches_built_backbone(overrides):
    config = {**BASE, **overrides}
    backbone = MoETransformerBackbone(**config)
    predicted = backbone_parameter_count(**config)
    counted = keras_moe.count_params(backbone)
    assert predicted["total"] == backbone.count_params() == counted["total"]
    assert predicted["active"] == counted["active"]
    assert sum(predicted["per_block"]) < predicted["total"]  # embeddings and the final norm sit outside blocks
    assert len(predicted["per_block"]) == config["num_layers"]
    has_moe = any(block.is_moe for block in backbone.transformer_layers)
    if has_moe and config.get("router") not in ("soft", "dense"):
        assert predicted["active"] < predicted["total"]  # some expert weights are idle per token
    else:
        assert predicted["active"] == predicted["total"]


def test_per_block_counts_match_built_blocks():
    config = {**BASE, **CONFIGS["dense_first_interval_2"]}
    backbone = MoETransformerBackbone(**config)
    per_block = backbone_parameter_count(**config)["per_block"]
    assert per_block == [block.count_params() for block in backbone.transformer_layers]
    assert per_block[0] != per_block[1]  # a dense block and an MoE block differ


def test_hand_counted_gqa_shared_expert_config():
    config = dict(
        vocabulary_size=32, hidden_dim=8, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_dim=4,
        num_experts=4, num_shared_experts=1, num_dense_layers=1, dense_intermediate_dim=6, kernel_initializer="zeros",
    )  # rms norm, rotary positions (no weights), untied, swiglu
    h, head_dim = 8, 4  # head_dim = hidden_dim / num_heads
    embeddings = 32 * h + h * 32  # token embedding [v, h] + untied output projection [h, v] = 512
    attention = (
        h * 2 * head_dim  # query  [h, n=2, d]  = 64
        + h * 1 * head_dim  # key  [h, g=1, d]  = 32
        + h * 1 * head_dim  # value [h, g=1, d] = 32
        + 2 * head_dim * h  # output [n, d, h]  = 64
    )  # = 192
    block_norms = 2 * h  # two RMSNorm scales per block = 16
    dense_ffn = h * 2 * 6 + 6 * h  # block 0 is dense (num_dense_layers=1), swiglu width 6: in [h, 2f] + out [f, h] = 144
    router = h * 4  # top-k router kernel [h, e] = 32
    expert = h * 2 * 4 + 4 * h  # one swiglu expert of width 4: 64 + 32 = 96
    experts = 4 * expert  # = 384
    shared = expert  # one shared expert: a FeedForward of width 1 * 4 = 96
    final_norm = h  # = 8
    total = embeddings + 2 * (attention + block_norms) + dense_ffn + router + experts + shared + final_norm
    assert total == 1592
    active = total - experts + 2 * expert  # top_k=2 of 4 experts per token
    assert active == 1400
    assert backbone_parameter_count(**config)["total"] == total
    assert backbone_parameter_count(**config)["active"] == active
    backbone = MoETransformerBackbone(**config)
    assert backbone.count_params() == total
    assert keras_moe.count_params(backbone) == {"total": total, "active": active}


def test_hand_counted_layer_norm_learned_tied_noisy_config():
    config = dict(
        vocabulary_size=16, hidden_dim=4, num_layers=1, num_heads=2, intermediate_dim=3, num_experts=3,
        router={"class_name": "noisy_top_k", "config": {"top_k": 1}}, activation="relu", normalization="layer",
        position_embedding="learned",
        max_sequence_length=8, tie_embeddings=True, kernel_initializer="zeros",
    )
    h = 4
    embeddings = 16 * h + 8 * h  # tied token embedding [v, h] (no separate output matrix) + learned positions [8, h] = 96
    attention = 4 * (h * 2 * 2)  # q, k, v [h, 2, 2] and output [2, 2, h]: 4 x 16 = 64
    block_norms = 2 * (2 * h)  # two LayerNorms, gamma + beta each = 16
    router = 2 * h * 3  # noisy top-k: routing kernel [h, e] + noise kernel [h, e] = 24
    expert = h * 3 + 3 * h  # relu (not gated): in [h, f] + out [f, h] = 24
    final_norm = 2 * h  # = 8
    total = embeddings + attention + block_norms + router + 3 * expert + final_norm
    assert total == 280
    active = total - 3 * expert + 1 * expert  # top_k=1 of 3
    assert active == 232
    assert backbone_parameter_count(**config)["total"] == total
    assert backbone_parameter_count(**config)["active"] == active
    assert keras_moe.count_params(MoETransformerBackbone(**config)) == {"total": total, "active": active}


def test_mixtral_8x7b_shape_without_building():
    counts = backbone_parameter_count(
        vocabulary_size=32000, hidden_dim=4096, num_layers=32, num_heads=32, num_kv_heads=8,
        intermediate_dim=14336, num_experts=8, tie_embeddings=False,
    )
    assert counts["total"] == 46_702_792_704
    assert counts["active"] == 12_879_925_248
    assert len(counts["per_block"]) == 32 and len(set(counts["per_block"])) == 1


def test_unknown_argument_is_rejected():
    with pytest.raises(ValueError, match="num_expert"):
        backbone_parameter_count(**BASE, num_expert=3)


@pytest.mark.parametrize("num_layers, num_dense_layers, interval, expected", [
    (4, 1, 2, [False, True, False, True]),
    (4, 0, 1, [True, True, True, True]),
    (4, 0, 2, [True, False, True, False]),
    (5, 2, 1, [False, False, True, True, True]),
    (3, 3, 1, [False, False, False]),
])
def test_moe_block_placement(num_layers, num_dense_layers, interval, expected):
    backbone = MoETransformerBackbone(
        **{**BASE, "num_layers": num_layers, "num_dense_layers": num_dense_layers, "moe_layer_interval": interval}
    )
    assert [block.is_moe for block in backbone.transformer_layers] == expected
    assert len(backbone.moe_layers) == sum(expected)


def test_no_experts_gives_a_dense_backbone():
    backbone = MoETransformerBackbone(**{**BASE, "num_experts": 0})
    assert not any(block.is_moe for block in backbone.transformer_layers)
    assert backbone.moe_layers == []


def test_router_instance_gives_each_block_its_own_router():
    config = {**BASE, "router": keras_moe.TopKRouter(4, top_k=2)}
    backbone = MoETransformerBackbone(**config)
    first, second = backbone.moe_layers
    assert first.router is not second.router
    assert backbone.count_params() == backbone_parameter_count(**config)["total"]
