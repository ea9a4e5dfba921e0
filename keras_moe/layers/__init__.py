"""MoE layers: `MoELayer` (router -> dispatch -> experts -> combine) and its modality-aware form."""

from keras_moe.layers.modality_moe_layer import ModalityMoELayer
from keras_moe.layers.moe_layer import MoELayer
from keras_moe.layers.search import moe_layers, routing_statistics
