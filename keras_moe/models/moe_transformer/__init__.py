"""The text MoE transformer: backbone, blocks, causal LM, classifier, preprocessors, serving signatures."""

# Registers the serving signatures (`keras_moe.export.signatures_for`) of the tasks above.
from keras_moe.models.moe_transformer import serving  # noqa: E402,F401
from keras_moe.models.moe_transformer.attention import CachedGroupedQueryAttention
from keras_moe.models.moe_transformer.moe_causal_lm import MoECausalLM
from keras_moe.models.moe_transformer.moe_causal_lm_preprocessor import MoECausalLMPreprocessor
from keras_moe.models.moe_transformer.moe_text_classifier import MoETextClassifier
from keras_moe.models.moe_transformer.moe_text_classifier_preprocessor import MoETextClassifierPreprocessor
from keras_moe.models.moe_transformer.moe_transformer_backbone import MoETransformerBackbone
from keras_moe.models.moe_transformer.transformer_block import MoETransformerBlock
