"""Models built from keras-moe layers: backbones and task models (keras-hub style)."""

from keras_moe.models.moe_transformer import (
    CachedGroupedQueryAttention,
    MoECausalLM,
    MoECausalLMPreprocessor,
    MoETextClassifier,
    MoETextClassifierPreprocessor,
    MoETransformerBackbone,
    MoETransformerBlock,
)
from keras_moe.models.multimodal import (
    MultimodalClassifierPreprocessor,
    MultimodalGateNetwork,
    MultimodalMixtureClassifier,
    MultimodalMoEBackbone,
    MultimodalMoEClassifier,
)
