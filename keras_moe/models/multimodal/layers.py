"""Building blocks of the multimodal models: patch embedding and modality dropout.

Axis letters: `b` batch, `s` sequence (image patches then text tokens), `h` hidden, `p` patches.
Modality ids everywhere: 0 = text, 1 = image (`TEXT`, `IMAGE`).
"""

import keras
import keras_hub
from keras import ops

from keras_moe.utils.validation import check_fraction, check_positive_int

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

    def parameter_count(self, num_channels):
        """Weights for images with `num_channels` channels (without building): stem convolutions,
        the patch projection and the patch positions, all with biases."""
        total, channels = 0, num_channels
        for width in self.stem_filters:
            total += 9 * channels * width + width
            channels = width
        return total + self.patch_size ** 2 * channels * self.hidden_dim + self.hidden_dim + self.num_patches * self.hidden_dim

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
        self.rate = check_fraction("rate", rate, upper=0.5, include_upper=True)
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


def image_augmentation_layers(translation, dtype=None, name=None):
    """Random horizontal flip, then (if `translation` > 0) random shifts by up to that fraction of the
    image filled with white: training-only Keras preprocessing layers, in the order to apply them.
    `name`: optional prefix of the layers' names."""
    named = (lambda suffix: None) if name is None else (lambda suffix: f"{name}_{suffix}")
    layers = [keras.layers.RandomFlip("horizontal", dtype=dtype, name=named("flip"))]
    if translation:
        layers.append(keras.layers.RandomTranslation(translation, translation, fill_mode="constant", fill_value=1.0, dtype=dtype,
                                                     name=named("translation")))
    return layers
