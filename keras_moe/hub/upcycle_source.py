"""Upcycling from a path: a trained keras-moe dense run, a `.keras` file or a keras-hub preset.

What the recipe `shakespeare_upcycled` (its model config `moe_lm_upcycled`) and `keras-moe upcycle`
call. The source is read once; the MoE model it returns owns copies of the weights.
"""

import os
import warnings

import keras
import keras_hub

from keras_moe.hub.upcycle import upcycle


def load_dense(source):
    """The dense model at `source`: a run folder holding `model.keras`, a `.keras` file, or a keras-hub
    preset directory (its CausalLM when it has a tokenizer, else its Backbone)."""
    source = os.fspath(source)
    if not os.path.exists(source):
        raise ValueError(f"No dense model at {source!r}: nothing is there. A run folder comes from `keras-moe train`; "
                         "for the recipe `shakespeare_upcycled` train its source first: `keras-moe train recipe=shakespeare_dense`.")
    if os.path.isdir(source) and os.path.isfile(os.path.join(source, "model.keras")):
        source = os.path.join(source, "model.keras")
    if source.endswith(".keras"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.models.load_model(source, compile=False)
    if os.path.isfile(os.path.join(source, "config.json")):
        if os.path.isfile(os.path.join(source, "tokenizer.json")):
            return keras_hub.models.CausalLM.from_preset(source)
        return keras_hub.models.Backbone.from_preset(source)
    raise ValueError(f"Cannot upcycle from {source!r}: expected a keras-moe run folder (with model.keras), "
                     "a .keras file or a keras-hub preset directory (with config.json).")


def upcycle_from(source, num_experts, top_k=2, router="top_k", expert_noise=0.0, seed=None, dispatch="auto", **options):
    """`upcycle(load_dense(source), ...)`: an MoE model whose experts start as copies of the dense FFNs.

    Args:
        source: see `load_dense`.
        num_experts, top_k, router, expert_noise, seed, dispatch, **options: see `upcycle`.

    Returns:
        An `MoECausalLM` (a CausalLM source, with its preprocessor) or an `MoETransformerBackbone`.
    """
    return upcycle(load_dense(source), num_experts, top_k=top_k, router=router, expert_noise=expert_noise, seed=seed,
                   dispatch=dispatch, **options)
