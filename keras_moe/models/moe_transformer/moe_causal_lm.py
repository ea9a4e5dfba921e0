"""A causal language model on `MoETransformerBackbone`, with keras-hub's `generate()`.

Axis letters: `b` batch, `s` sequence, `l` layers, `g` key/value heads, `d` head dim, `v` vocabulary.
"""

import keras
import keras_hub
import numpy as np
from keras import ops

from keras_moe.layers.search import routing_statistics
from keras_moe.models.moe_transformer.moe_causal_lm_preprocessor import MoECausalLMPreprocessor
from keras_moe.models.moe_transformer.moe_transformer_backbone import MoETransformerBackbone


@keras.saving.register_keras_serializable(package="keras_moe")
class MoECausalLM(keras_hub.models.CausalLM):
    """Next-token prediction with an MoE transformer (Mixtral-style with the backbone defaults).

    `generate()` comes from `keras_hub.models.CausalLM`: raw strings in and out, keras-hub samplers
    (`"greedy"`, `"top_k"`, `"top_p"`, ...), and a KV cache (`call_with_cache`), so each new token
    costs one position, not the whole prefix.

    Args:
        backbone: a causal `MoETransformerBackbone`.
        preprocessor: a `MoECausalLMPreprocessor` or None (then `generate` takes token ids).

    Example:

    ```python
    backbone = keras_moe.models.MoETransformerBackbone(
        vocabulary_size=256, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=16, num_experts=4)
    lm = keras_moe.models.MoECausalLM(backbone, keras_moe.models.MoECausalLMPreprocessor(sequence_length=16))
    lm.compile(sampler="greedy")
    assert isinstance(lm.generate("To be", max_length=12), str)
    ```
    """

    backbone_cls = MoETransformerBackbone
    preprocessor_cls = MoECausalLMPreprocessor

    def __init__(self, backbone, preprocessor=None, **kwargs):
        if not backbone.causal:
            raise ValueError("`MoECausalLM` needs a causal backbone. Received a backbone with causal=False.")
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        # === Functional Model ===
        inputs = backbone.input
        hidden = backbone(inputs)
        outputs = backbone.token_embedding(hidden, reverse=True)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    def generate(self, inputs, max_length=None, stop_token_ids="auto", strip_prompt=False):
        """keras-hub's `generate`; `"auto"` stop tokens mean none when the tokenizer has no end token (bytes).

        Generation records no routing statistics (they cost time per step and describe nothing).
        """
        tokenizer = getattr(self.preprocessor, "tokenizer", None)
        if isinstance(stop_token_ids, str) and stop_token_ids == "auto" and getattr(tokenizer, "end_token_id", None) is None:
            stop_token_ids = None
        with routing_statistics(self, enabled=False):
            return super().generate(inputs, max_length=max_length, stop_token_ids=stop_token_ids, strip_prompt=strip_prompt)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """One forward pass over `token_ids [b, s]` reading and updating `cache [b, l, 2, max_len, g, d]`."""
        hidden = self.backbone.embed(token_ids, start_index=cache_update_index)
        caches = []
        for i, block in enumerate(self.backbone.transformer_layers):
            hidden, layer_cache = block(hidden, cache=cache[:, i], cache_update_index=cache_update_index)
            caches.append(layer_cache)
        hidden = self.backbone.layer_norm(hidden)
        logits = self.backbone.token_embedding(hidden, reverse=True)
        return logits, hidden, ops.stack(caches, axis=1)

    def _build_cache(self, token_ids):
        batch, max_length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        b = self.backbone
        cache = ops.zeros([batch, b.num_layers, 2, max_length, b.num_kv_heads, b.head_dim], dtype=self.compute_dtype)
        _, hidden, cache = self.call_with_cache(token_ids, cache, 0)
        return hidden, cache

    def generate_step(self, inputs, stop_token_ids=None):
        """A compilable generation loop for one batch `{"token_ids", "padding_mask"}` (keras-hub's pattern)."""
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        hidden, cache = self._build_cache(token_ids)
        index = ops.min(ops.sum(ops.cast(padding_mask, "int32"), axis=-1))

        def next(prompt, cache, index):
            update_index = index - 1
            step = ops.slice(prompt, [0, update_index], [ops.shape(prompt)[0], 1])
            logits, hidden, cache = self.call_with_cache(step, cache, update_index)
            return ops.squeeze(logits, axis=1), ops.squeeze(hidden, axis=1), cache

        token_ids = self.sampler(
            next=next, prompt=token_ids, cache=cache, index=index, mask=padding_mask,
            stop_token_ids=stop_token_ids, hidden_states=hidden, model=self,
        )
        if stop_token_ids is not None:
            end = ops.zeros_like(token_ids, "bool")
            for stop in stop_token_ids:
                end = ops.logical_or(end, ops.logical_and(ops.equal(token_ids, stop), ops.logical_not(padding_mask)))
            end = ops.cast(end, "int32")
            padding_mask = ops.logical_not(ops.cast(ops.cumsum(end, axis=-1) - end, "bool"))
        else:
            padding_mask = ops.ones_like(token_ids, dtype="bool")
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def generate_without_cache(self, token_ids, padding_mask, max_new_tokens):
        """Greedy decoding that recomputes the whole prefix each step: the oracle for the cached path."""
        token_ids = ops.convert_to_numpy(token_ids).copy()
        prompt = ops.convert_to_numpy(padding_mask).astype(bool)
        length = int(prompt.sum(axis=-1).min())
        for position in range(length, min(length + max_new_tokens, token_ids.shape[1])):
            mask = np.broadcast_to(np.arange(token_ids.shape[1]) < position, token_ids.shape).astype("int32")
            logits = self({"token_ids": token_ids, "padding_mask": mask})
            next_tokens = ops.convert_to_numpy(ops.argmax(logits[:, position - 1], axis=-1))
            token_ids[:, position] = np.where(prompt[:, position], token_ids[:, position], next_tokens)  # keep prompts
        return token_ids
