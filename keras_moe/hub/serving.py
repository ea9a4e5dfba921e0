"""Serving signatures of keras-hub CausalLMs (sparsified or not): raw strings in, keras-moe's
`serving_default` (next-token logits, ids and text) and `generate` out, tokenized in the graph by
the model's own keras-hub tokenizer. Prompts enter without the preprocessor's start token (as
`MoECausalLM`'s). Models whose backbone takes more than token ids and a padding mask (Gemma 4's
`position_ids`) are not served this way; `export_saved_model` says so.
"""

import keras_hub

from keras_moe.export import register_signatures
from keras_moe.models.moe_transformer.serving import causal_lm_signatures


@register_signatures(keras_hub.models.CausalLM)
def keras_hub_causal_lm_signatures(model):
    names = {getattr(t, "name", "").split(":")[0] for t in model.backbone.inputs}
    if names != {"token_ids", "padding_mask"}:
        raise ValueError(
            f"Serving {type(model).__name__} needs a backbone whose inputs are token_ids and padding_mask; "
            f"this one takes {sorted(names)}."
        )
    return causal_lm_signatures(model, routing=False)
