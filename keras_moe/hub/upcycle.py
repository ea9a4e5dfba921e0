"""Sparse upcycling (Komatsuzaki et al. 2022): a trained dense transformer becomes an MoE model whose
experts all start as copies of the dense feed-forward layer.

Axis letters: `v` vocabulary, `h` hidden, `n` query heads, `g` key/value heads, `d` head dim,
`f` FFN width (`F = 2f` for gated activations: gate then up), `e` experts.

`upcycle(model, num_experts)` reads a dense keras-hub model (Llama, Mistral, Qwen, Gemma, GPT-2) or
keras-moe's own dense LM into one common description of its weights (`DenseWeights`), and builds a
keras-moe `MoETransformerBackbone` with the same architecture (norms, positions, attention biases,
head width, sliding window, embedding scale) whose every block is an MoE layer: each expert a copy
of that block's FFN, the router freshly initialised. With the default router every token's combine
weights sum to 1 (`normalize_top_k=True`; at `top_k = 1`, `"straight_through"`: weight 1 with the
router's gradient), so at initialisation the MoE computes exactly what the dense model computes.
`expert_noise > 0` re-initialises that share of each expert's FFN units (Drop-Upcycling, Nakamura
et al. 2025), so experts start different (and the outputs then differ from the dense model's).

A new source family is one function registered with `register_upcycler`.
"""

from typing import Any, NamedTuple

import keras
import keras_hub
import numpy as np

from keras_moe import routing
from keras_moe.models.moe_transformer.moe_causal_lm import MoECausalLM
from keras_moe.models.moe_transformer.moe_transformer_backbone import MoETransformerBackbone
from keras_moe.utils.validation import check_fraction, check_positive_int

UPCYCLERS = {}  # dense backbone class -> reader(backbone) -> DenseWeights


class DenseWeights(NamedTuple):
    """A dense transformer as numbers: `config` (MoETransformerBackbone arguments, no MoE ones),
    `embeddings` (`{"token", "reverse"?, "position"?}`), `final_norm` (`{"scale"}` or
    `{"gamma", "beta"}`), and `layers`, one dict per block: `attention_norm`, `ffn_norm`, `query`
    `[h, n, d]`, `key`/`value` `[h, g, d]`, `output` `[n, d, h]`, optional `*_bias`, `ffn_in` `[h, F]`,
    `ffn_out` `[f, h]`, optional `ffn_in_bias` `[F]`, `ffn_out_bias` `[h]`."""

    config: dict
    embeddings: dict
    final_norm: dict
    layers: list
    preprocessor: Any = None


def register_upcycler(backbone_class):
    """Decorator: `reader(backbone) -> DenseWeights` upcycles `backbone_class` models."""

    def register(reader):
        UPCYCLERS[backbone_class] = reader
        return reader

    return register


def _numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _norm(layer):
    names = {w.name: _numpy(w) for w in layer.weights}
    return {"gamma": names["gamma"], "beta": names["beta"]} if "gamma" in names else {"scale": names["scale"]}


def _einsum_weights(layer, prefix):
    out = {prefix: _numpy(layer.kernel)}
    if getattr(layer, "bias", None) is not None:
        out[f"{prefix}_bias"] = _numpy(layer.bias)
    return out


@register_upcycler(keras_hub.models.LlamaBackbone)
@register_upcycler(keras_hub.models.MistralBackbone)
@register_upcycler(keras_hub.models.QwenBackbone)
def _llama_like(backbone):
    """Llama, Mistral (sliding window) and Qwen (biased query/key/value, tied embeddings): RMSNorm,
    rotary positions, grouped-query attention, SwiGLU."""
    c = backbone.get_config()
    for key in ("rope_position_scaling_factor", "rope_scaling_factor"):
        if c.get(key, 1.0) != 1.0:
            raise ValueError(f"Upcycling supports unscaled rotary positions; this model has {key}={c[key]}.")
    if c.get("rope_frequency_adjustment_factor") is not None:
        raise ValueError("Upcycling supports unscaled rotary positions; this model adjusts rope frequencies (Llama 3.1).")
    qwen = isinstance(backbone, keras_hub.models.QwenBackbone)
    sliding = c.get("sliding_window") if not qwen else (c["sliding_window_size"] if c["use_sliding_window_attention"] else None)
    config = dict(
        vocabulary_size=c["vocabulary_size"], num_layers=c["num_layers"], num_heads=c["num_query_heads"],
        num_kv_heads=c["num_key_value_heads"], hidden_dim=c["hidden_dim"], intermediate_dim=c["intermediate_dim"],
        activation="swiglu", normalization="rms", layer_norm_epsilon=c["layer_norm_epsilon"],
        rope_max_wavelength=c["rope_max_wavelength"], tie_embeddings=bool(c.get("tie_word_embeddings", False)),
        attention_bias="qkv" if qwen else False, sliding_window=sliding,
    )
    layers = []
    for block in backbone.transformer_layers:
        attention = block._self_attention_layer
        weights = {"attention_norm": _norm(block._self_attention_layernorm), "ffn_norm": _norm(block._feedforward_layernorm)}
        for name, layer in (("query", attention._query_dense), ("key", attention._key_dense),
                            ("value", attention._value_dense), ("output", attention._output_dense)):
            weights.update(_einsum_weights(layer, name))
        weights["ffn_in"] = np.concatenate([_numpy(block._feedforward_gate_dense.kernel),
                                            _numpy(block._feedforward_intermediate_dense.kernel)], axis=-1)
        weights["ffn_out"] = _numpy(block._feedforward_output_dense.kernel)
        layers.append(weights)
    embeddings = {"token": _numpy(backbone.token_embedding.embeddings)}
    if not config["tie_embeddings"]:
        embeddings["reverse"] = _numpy(backbone.token_embedding.reverse_embeddings)
    return DenseWeights(config, embeddings, _norm(backbone.layer_norm), layers)


@register_upcycler(keras_hub.models.GemmaBackbone)
def _gemma(backbone):
    """Gemma (1): embeddings times sqrt(h), `(1 + w)` RMSNorm, explicit head width, GeGLU (tanh GELU)."""
    c = backbone.get_config()
    unsupported = {key: c[key] for key in ("use_post_ffw_norm", "use_post_attention_norm", "final_logit_soft_cap",
                                             "attention_logit_soft_cap", "use_sliding_window_attention") if c.get(key)}
    if unsupported or not c.get("query_head_dim_normalize", True):
        raise ValueError(f"Upcycling supports Gemma (1) models; this one has Gemma 2 features {unsupported or 'query scaling'}.")
    config = dict(
        vocabulary_size=c["vocabulary_size"], num_layers=c["num_layers"], num_heads=c["num_query_heads"],
        num_kv_heads=c["num_key_value_heads"], hidden_dim=c["hidden_dim"], intermediate_dim=c["intermediate_dim"] // 2,
        head_dim=c["head_dim"], activation="geglu_tanh", normalization="rms_plus_one", layer_norm_epsilon=c["layer_norm_epsilon"],
        tie_embeddings=True, embedding_scale=float(np.sqrt(c["hidden_dim"])),
    )
    layers = []
    for block in backbone.transformer_layers:
        attention = block.attention
        layers.append({
            "attention_norm": _norm(block.pre_attention_norm), "ffn_norm": _norm(block.pre_ffw_norm),
            "query": np.transpose(_numpy(attention.query_dense.kernel), (1, 0, 2)),  # [n, h, d] -> [h, n, d]
            "key": np.transpose(_numpy(attention.key_dense.kernel), (1, 0, 2)),
            "value": np.transpose(_numpy(attention.value_dense.kernel), (1, 0, 2)),
            "output": _numpy(attention.output_dense.kernel),
            "ffn_in": np.concatenate([_numpy(block.gating_ffw.kernel), _numpy(block.gating_ffw_2.kernel)], axis=-1),
            "ffn_out": _numpy(block.ffw_linear.kernel),
        })
    return DenseWeights(config, {"token": _numpy(backbone.token_embedding.embeddings)}, _norm(backbone.layer_norm), layers)


@register_upcycler(keras_hub.models.GPT2Backbone)
def _gpt2(backbone):
    """GPT-2: learned positions, pre-LayerNorm, biased attention and FFN, tanh GELU, tied embeddings."""
    c = backbone.get_config()
    config = dict(
        vocabulary_size=c["vocabulary_size"], num_layers=c["num_layers"], num_heads=c["num_heads"],
        hidden_dim=c["hidden_dim"], intermediate_dim=c["intermediate_dim"], activation="gelu_tanh", use_bias=True,
        normalization="layer", layer_norm_epsilon=1e-5, position_embedding="learned",
        max_sequence_length=c["max_sequence_length"], tie_embeddings=True, attention_bias=True,
    )
    layers = []
    for block in backbone.transformer_layers:
        attention = block._self_attention_layer
        weights = {"attention_norm": _norm(block._self_attention_layer_norm), "ffn_norm": _norm(block._feedforward_layer_norm)}
        for name, layer in (("query", attention._query_dense), ("key", attention._key_dense),
                            ("value", attention._value_dense), ("output", attention._output_dense)):
            weights.update(_einsum_weights(layer, name))
        inner, outer = block._feedforward_intermediate_dense, block._feedforward_output_dense
        weights.update(ffn_in=_numpy(inner.kernel), ffn_in_bias=_numpy(inner.bias),
                       ffn_out=_numpy(outer.kernel), ffn_out_bias=_numpy(outer.bias))
        layers.append(weights)
    embeddings = {"token": _numpy(backbone.token_embedding.embeddings),
                  "position": _numpy(backbone.position_embedding.position_embeddings)}
    return DenseWeights(config, embeddings, _norm(backbone.layer_norm), layers)


@register_upcycler(MoETransformerBackbone)
def _keras_moe(backbone):
    """keras-moe's own dense LM (`num_experts=0`, e.g. `recipe=shakespeare_dense`)."""
    if backbone.moe_layers:
        raise ValueError(f"This MoETransformerBackbone already has {len(backbone.moe_layers)} MoE blocks; upcycle a dense one.")
    config = {k: v for k, v in backbone.get_config().items() if k not in ("name", "trainable", "dtype", "num_experts",
                                                                          "router", "dense_intermediate_dim")}
    layers = []
    for block in backbone.transformer_layers:
        attention, ffn = block.attention, block.feed_forward
        weights = {"attention_norm": _norm(block.attention_norm), "ffn_norm": _norm(block.feed_forward_norm)}
        for name, layer in (("query", attention.query_dense), ("key", attention.key_dense),
                            ("value", attention.value_dense), ("output", attention.output_dense)):
            weights.update(_einsum_weights(layer, name))
        weights.update(ffn_in=_numpy(ffn.in_kernel), ffn_out=_numpy(ffn.out_kernel))
        if ffn.use_bias:
            weights.update(ffn_in_bias=_numpy(ffn.in_bias), ffn_out_bias=_numpy(ffn.out_bias))
        layers.append(weights)
    config["intermediate_dim"] = backbone.transformer_layers[0].feed_forward.intermediate_dim
    embeddings = {"token": _numpy(backbone.token_embedding.embeddings)}
    if not backbone.tie_embeddings:
        embeddings["reverse"] = _numpy(backbone.token_embedding.reverse_embeddings)
    if backbone.position_embedding is not None:
        embeddings["position"] = _numpy(backbone.position_embedding.position_embeddings)
    return DenseWeights(config, embeddings, _norm(backbone.layer_norm), layers)


def _reader(backbone):
    for cls in type(backbone).__mro__:
        if cls in UPCYCLERS:
            return UPCYCLERS[cls]
    supported = ", ".join(sorted(cls.__name__ for cls in UPCYCLERS))
    raise ValueError(f"keras_moe.hub.upcycle cannot read a {type(backbone).__name__}; it reads {supported}.")


def default_router(top_k):
    """Softmax top-k whose combine weights sum to 1 (at `top_k = 1`, straight-through: weight 1, router gradient)."""
    return {"class_name": "top_k", "config": {"top_k": top_k, "normalize_top_k": "straight_through" if top_k == 1 else True}}


def upcycle(model, num_experts, top_k=2, router="top_k", expert_noise=0.0, seed=None, dispatch="auto", **options):
    """An MoE model whose every expert starts as a copy of `model`'s dense FFN (sparse upcycling).

    Args:
        model: a dense keras-hub `LlamaBackbone`, `MistralBackbone`, `QwenBackbone`, `GemmaBackbone`,
            `GPT2Backbone` or keras-moe `MoETransformerBackbone` (`num_experts=0`), or a CausalLM on one.
        num_experts: int, experts per block.
        top_k: int, experts per token (set in the router unless `router` is a dict that sets it).
        router: `"top_k"` (default: weights summing to 1, so the outputs equal the dense model's) or
            any router spec of `keras_moe.routing.get`.
        expert_noise: float in [0, 1): share of each expert's FFN units re-initialised (Drop-Upcycling).
        seed: int seed for the router initialisation and the noise.
        dispatch: see `MoELayer`.
        **options: further `MoETransformerBackbone` arguments (e.g. `moe_layer_interval`,
            `train_capacity_factor`).

    Returns:
        An `MoETransformerBackbone`, or an `MoECausalLM` (with `model`'s preprocessor) for a CausalLM.

    Example:

    ```python
    dense = keras_hub.models.LlamaBackbone(vocabulary_size=64, num_layers=1, num_query_heads=2,
                                           hidden_dim=8, intermediate_dim=16, num_key_value_heads=1)
    moe = keras_moe.hub.upcycle(dense, num_experts=4, top_k=2)
    x = {"token_ids": np.ones((1, 4), "int32"), "padding_mask": np.ones((1, 4), "int32")}
    assert np.allclose(keras.ops.convert_to_numpy(moe(x)), keras.ops.convert_to_numpy(dense(x)), atol=1e-5)
    ```
    """
    check_positive_int("num_experts", num_experts)
    check_positive_int("top_k", top_k)
    expert_noise = check_fraction("expert_noise", expert_noise)
    task = model if isinstance(model, keras_hub.models.Task) else None
    backbone = model.backbone if task is not None else model
    weights = _reader(backbone)(backbone)
    if router == "top_k":
        router = default_router(top_k)
    else:
        router = keras.saving.serialize_keras_object(routing.get(router, num_experts=num_experts, top_k=top_k))
    if seed is not None:
        keras.utils.set_random_seed(seed)
    moe = MoETransformerBackbone(**{**weights.config, "num_experts": num_experts, "router": router, "dispatch": dispatch,
                                    **options})
    _write(moe, weights, num_experts, expert_noise, np.random.default_rng(seed))
    if task is None:
        return moe
    return MoECausalLM(moe, preprocessor=getattr(task, "preprocessor", None))


def _assign_norm(layer, values):
    for weight in layer.weights:
        weight.assign(values[weight.name])


def _tile(array, num_experts):
    return np.repeat(array[None], num_experts, axis=0)


def _write(moe, weights, num_experts, expert_noise, rng):
    moe.token_embedding.embeddings.assign(weights.embeddings["token"])
    if "reverse" in weights.embeddings:
        moe.token_embedding.reverse_embeddings.assign(weights.embeddings["reverse"])
    if "position" in weights.embeddings:
        moe.position_embedding.position_embeddings.assign(weights.embeddings["position"])
    _assign_norm(moe.layer_norm, weights.final_norm)
    for block, dense in zip(moe.transformer_layers, weights.layers):
        _assign_norm(block.attention_norm, dense["attention_norm"])
        _assign_norm(block.feed_forward_norm, dense["ffn_norm"])
        attention = block.attention
        for name, layer in (("query", attention.query_dense), ("key", attention.key_dense),
                            ("value", attention.value_dense), ("output", attention.output_dense)):
            layer.kernel.assign(dense[name])
            if f"{name}_bias" in dense:
                layer.bias.assign(dense[f"{name}_bias"])
        experts = block.feed_forward.experts if block.is_moe else None
        if experts is None:  # a block kept dense (moe_layer_interval, num_dense_layers)
            ffn = block.feed_forward
            ffn.in_kernel.assign(dense["ffn_in"])
            ffn.out_kernel.assign(dense["ffn_out"])
            if ffn.use_bias:
                ffn.in_bias.assign(dense["ffn_in_bias"])
                ffn.out_bias.assign(dense["ffn_out_bias"])
            continue
        in_kernel, out_kernel = _tile(dense["ffn_in"], num_experts), _tile(dense["ffn_out"], num_experts)
        if expert_noise > 0:
            _drop_upcycle(in_kernel, out_kernel, experts.expert_activation.gated, expert_noise, rng)
        experts.in_kernel.assign(in_kernel)
        experts.out_kernel.assign(out_kernel)
        if experts.use_bias:
            experts.in_bias.assign(_tile(dense["ffn_in_bias"], num_experts))
            experts.out_bias.assign(_tile(dense["ffn_out_bias"], num_experts))


def _drop_upcycle(in_kernel, out_kernel, gated, share, rng):
    """Re-initialises `share` of each expert's FFN units (their input columns and output row) from a
    normal with each matrix's own scale (Nakamura et al. 2025, Drop-Upcycling)."""
    num_experts, width = out_kernel.shape[0], out_kernel.shape[1]
    count = int(round(share * width))
    in_std, out_std = in_kernel.std(), out_kernel.std()
    for e in range(num_experts):
        units = rng.choice(width, size=count, replace=False)
        columns = np.concatenate([units, units + width]) if gated else units
        in_kernel[e][:, columns] = rng.normal(0.0, in_std, (in_kernel.shape[1], len(columns)))
        out_kernel[e][units, :] = rng.normal(0.0, out_std, (count, out_kernel.shape[2]))
