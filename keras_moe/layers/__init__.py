from keras_moe.layers.moe_layer import MoELayer
