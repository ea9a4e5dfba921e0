"""Raw `{"images": uint8, "names": string}` to model inputs, in TensorFlow ops (also in the serving graph)."""

import keras
import keras_hub
import tensorflow as tf
from keras_hub.layers import StartEndPacker
from keras_hub.src.utils.tensor_utils import preprocessing_function

from keras_moe.utils.validation import check_positive_int


def prepare_images(images, image_size):
    """uint8 `[b, h, w, 3 | 4]` -> float32 `[b, image_size, image_size, 3]` in [0, 1] (TensorFlow ops).

    RGBA is composited on white (the emoji's background is transparent); the result is resized
    with antialiasing. Used by the data pipeline and inside the serving graph, so both agree.
    """
    images = tf.convert_to_tensor(images)
    pixels = tf.cast(images, tf.float32) / 255.0
    channels = tf.shape(pixels)[-1]

    def composite():
        alpha = pixels[..., 3:4]
        return pixels[..., :3] * alpha + (1.0 - alpha)

    rgb = tf.cond(tf.equal(channels, 4), composite, lambda: pixels[..., :3]) if pixels.shape[-1] is None else (
        composite() if pixels.shape[-1] == 4 else pixels[..., :3]
    )
    if rgb.shape[1] == image_size and rgb.shape[2] == image_size:
        return rgb
    return tf.clip_by_value(tf.image.resize(rgb, (image_size, image_size), antialias=True), 0.0, 1.0)


@keras.saving.register_keras_serializable(package="keras_moe")
class MultimodalClassifierPreprocessor(keras_hub.models.Preprocessor):
    """Images: RGBA composited on white, resized to `image_size`, scaled to [0, 1]; names: tokenized
    and padded/truncated to `sequence_length` with id 0.

    Args:
        tokenizer: a keras-hub tokenizer (e.g. the `WordPieceTokenizer` of `EmojiClassification`).
        sequence_length: int, tokens per name.
        image_size: int, model image height and width.

    Call: `x = {"images": uint8 [b, h, w, 3 | 4], "names": string [b]}` (and optional `y`,
    `sample_weight`) -> `({"images": float32 [b, image_size, image_size, 3], "token_ids": int32
    [b, sequence_length], "padding_mask": bool [b, sequence_length]}, y, sample_weight)`.
    """

    backbone_cls = None

    def __init__(self, tokenizer, sequence_length=16, image_size=32, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.output_image_size = check_positive_int("image_size", image_size)  # `image_size` is a keras-hub property
        self.packer = None

    def build(self, input_shape):
        self.packer = StartEndPacker(sequence_length=self.sequence_length, pad_value=0, return_padding_mask=True, dtype="int32")
        self.built = True

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None):
        token_ids, padding_mask = self.packer(self.tokenizer(x["names"]))
        features = {"images": prepare_images(x["images"], self.output_image_size), "token_ids": token_ids, "padding_mask": padding_mask}
        return keras.utils.pack_x_y_sample_weight(features, y, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"sequence_length": self.sequence_length, "image_size": self.output_image_size})
        return config
