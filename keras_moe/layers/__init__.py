from keras_moe.layers.moe_layer import MoELayer
from keras_moe.layers.modality_moe_layer import ModalityMoELayer
