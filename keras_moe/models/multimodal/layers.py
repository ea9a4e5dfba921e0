"""Building blocks of the multimodal models: patch embedding, modality dropout, a modality-aware block.

Axis letters: `b` batch, `s` sequence (image patches then text tokens), `h` hidden, `p` patches.
Modality ids everywhere: 0 = text, 1 = image (`TEXT`, `IMAGE`).
"""

import keras
import keras_hub
from keras import ops

from keras_moe.experts.feed_forward import FeedForward
from keras_moe.layers.modality_moe_layer import ModalityMoELayer
from keras_moe.models.moe_transformer.attention import CachedGroupedQueryAttention
from keras_moe.models.moe_transformer.transformer_block import NORMALIZATIONS, attention_mask, make_norm
from keras_moe.utils.validation import check_choice, check_positive_int

TEXT, IMAGE = 0, 1
MODALITIES = {"text": TEXT, "image": IMAGE}


@keras.saving.register_keras_serializable(package="keras_moe")
class PatchEmbedding(keras.layers.Layer):
    """ViT patch embedding: optional 3x3 conv stem, non-overlapping `patch_size` patches, learned positions.

    `images [b, H, W, c] -> [b, (H / patch_size) * (W / patch_size), hidden_dim]`. A few stride-1
    convolutions before patchifying (`stem_filters`) help small transformers on small image sets
    (Xiao et al. 2021, "Early convolutions help transformers see better").

    Args:
        image_size: int, input height and width.
        patch_size: int, must divide `image_size`.
        hidden_dim: int.
        stem_filters: list of ints, one 3x3 ReLU convolution per entry (empty: pure ViT).
        kernel_initializer: initializer.
    """

    def __init__(self, image_size, patch_size, hidden_dim, stem_filters=(), kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.image_size = check_positive_int("image_size", image_size)
        self.patch_size = check_positive_int("patch_size", patch_size)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        if image_size % patch_size:
            raise ValueError(f"`patch_size` must divide `image_size`. Received: image_size={image_size}, patch_size={patch_size}")
        self.stem_filters = [check_positive_int("stem_filters", f) for f in stem_filters]
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.stem = [
            keras.layers.Conv2D(f, 3, padding="same", activation="relu", kernel_initializer=kernel_initializer,
                                dtype=self.dtype_policy, name=f"stem_{i}")
            for i, f in enumerate(self.stem_filters)
        ]
        self.projection = keras.layers.Conv2D(hidden_dim, patch_size, strides=patch_size, kernel_initializer=kernel_initializer,
                                              dtype=self.dtype_policy, name="projection")
        self.position_embedding = keras_hub.layers.PositionEmbedding(self.num_patches, dtype=self.dtype_policy, name="position_embedding")

    @property
    def num_patches(self):
        return (self.image_size // self.patch_size) ** 2

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.stem:
            conv.build(shape)
            shape = shape[:-1] + (conv.filters,)
        self.projection.build(shape)
        self.position_embedding.build((None, self.num_patches, self.hidden_dim))

    def call(self, images):
        hidden = images
        for conv in self.stem:
            hidden = conv(hidden)
        patches = ops.reshape(self.projection(hidden), (-1, self.num_patches, self.hidden_dim))
        return patches + self.position_embedding(patches)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_patches, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"image_size": self.image_size, "patch_size": self.patch_size, "hidden_dim": self.hidden_dim,
                       "stem_filters": list(self.stem_filters),
                       "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)})
        return config


@keras.saving.register_keras_serializable(package="keras_moe")
class ModalityDropout(keras.layers.Layer):
    """When training, hides a whole modality of an example with probability `rate` (each modality;
    never both): its tokens leave the padding mask, so attention, experts and pooling ignore them.

    This keeps every modality's pathway predictive on its own, so that one modality cannot
    dominate the joint model (a form of modality dropout, Neverova et al. 2016, "ModDrop").

    Args:
        rate: float in [0, 0.5], probability of hiding the image (and, separately, the text).
        seed: optional int.

    Call args: `padding_mask [b, s]`, `modality_ids [b, s]`, `training`. Returns float32 `[b, s]`.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 0.5:
            raise ValueError(f"`rate` must be a number in [0, 0.5]. Received: rate={rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, padding_mask, modality_ids, training=False):
        mask = ops.cast(padding_mask, "float32")
        if not training or self.rate == 0:
            return mask
        draw = keras.random.uniform((ops.shape(mask)[0], 1), seed=self.seed_generator)
        hide_image = ops.cast(draw < self.rate, "float32")
        hide_text = ops.cast(draw > 1.0 - self.rate, "float32")
        is_image = ops.cast(ops.equal(modality_ids, IMAGE), "float32")
        hidden = hide_image * is_image + hide_text * (1.0 - is_image)
        return mask * (1.0 - hidden)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="keras_moe")
class MultimodalTransformerBlock(keras.layers.Layer):
    """Pre-norm encoder block over a mixed image/text sequence: shared attention, then an FFN that
    is a `ModalityMoELayer` (seeing each token's modality id) or a dense `FeedForward`.

    Args:
        num_heads: int.
        feed_forward: a `ModalityMoELayer` or `FeedForward` (or its serialised config).
        normalization: `"layer"` or `"rms"`. layer_norm_epsilon: float.
        dropout: float, on the attention and FFN outputs.
        kernel_initializer: initializer of the attention projections.

    Call args: `hidden [b, s, h]`, `padding_mask [b, s]`, `modality_ids [b, s]`, `training`.
    """

    def __init__(self, num_heads, feed_forward, normalization="layer", layer_norm_epsilon=1e-5, dropout=0.0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if isinstance(feed_forward, dict):
            feed_forward = keras.saving.deserialize_keras_object(feed_forward)
        if not isinstance(feed_forward, (ModalityMoELayer, FeedForward)):
            raise ValueError(f"`feed_forward` must be a ModalityMoELayer or FeedForward. Received: feed_forward={feed_forward!r}")
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.feed_forward = feed_forward
        self.normalization = check_choice("normalization", normalization, NORMALIZATIONS)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.attention = CachedGroupedQueryAttention(num_heads, num_heads, use_rotary=False, kernel_initializer=kernel_initializer,
                                                     dtype=self.dtype_policy, name="attention")
        self.attention_norm = make_norm(normalization, layer_norm_epsilon, self.dtype_policy, "attention_norm")
        self.feed_forward_norm = make_norm(normalization, layer_norm_epsilon, self.dtype_policy, "feed_forward_norm")
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    @property
    def is_moe(self):
        return isinstance(self.feed_forward, ModalityMoELayer)

    def build(self, input_shape):
        for layer in (self.attention_norm, self.attention, self.feed_forward_norm):
            layer.build(input_shape)
        if not self.feed_forward.built:
            self.feed_forward.build(input_shape)

    def call(self, hidden, padding_mask, modality_ids, training=False):
        length = ops.shape(hidden)[1]
        mask = attention_mask(padding_mask, length, length, causal=False)
        attended = self.attention(self.attention_norm(hidden), attention_mask=mask, training=training)
        hidden = hidden + self.dropout_layer(attended, training=training)
        normed = self.feed_forward_norm(hidden)
        if self.is_moe:
            ffn = self.feed_forward(normed, modality_ids=modality_ids, mask=padding_mask, training=training)
        else:
            ffn = self.feed_forward(normed)
        return hidden + self.dropout_layer(ffn, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "feed_forward": keras.saving.serialize_keras_object(self.feed_forward),
            "normalization": self.normalization,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config
