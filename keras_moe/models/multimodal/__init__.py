"""Multimodal MoE models on paired images and text: a shared sparse transformer (LIMoE style),
modality experts, and a mixture over whole expert models."""

# Registers the serving signatures (`keras_moe.export.signatures_for`) of the classifiers above.
from keras_moe.models.multimodal import serving  # noqa: E402,F401
from keras_moe.models.multimodal.classifiers import (
    MultimodalGateNetwork,
    MultimodalMixtureClassifier,
    MultimodalMoEClassifier,
    image_expert,
    text_expert,
)
from keras_moe.models.multimodal.contrastive import (  # noqa: E402
    ContrastiveDualEncoder,
    contrastive_loss,
    image_tower,
    recall_at_k,
    text_tower,
)
from keras_moe.models.multimodal.layers import IMAGE, TEXT, ModalityDropout, PatchEmbedding
from keras_moe.models.multimodal.multimodal_backbone import MultimodalMoEBackbone
from keras_moe.models.multimodal.preprocessor import MultimodalClassifierPreprocessor, prepare_images
