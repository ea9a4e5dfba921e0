"""Routing analysis: per-modality expert shares (metrics and a PNG) and mixture gate weights."""

from keras_moe.analysis.modality_routing import (
    analyse,
    gate_analysis,
    is_multimodal,
    modality_routing,
    model_inputs,
    plot_modality_routing,
)
