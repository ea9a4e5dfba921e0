"""Serving signatures of the multimodal classifiers: raw images and names in, named outputs out.

- `serving_default(images, names)`: `images` uint8 `[b, h, w, 3 | 4]` (RGB or RGBA, any size),
  `names` string `[b]`.
- `serve_png(png_bytes, names)`: `png_bytes` string `[b]` (TF Serving's `_bytes` naming: binary, sent
  as `{"b64": ...}` over REST), encoded PNG (or any format `tf.io.decode_image`
  reads: JPEG, GIF, BMP), each of any size.

Both return `probabilities [b, c]` (float32), `class_ids [b]` (int32) and `labels [b]` (class names),
plus `gate_weights [b, e]` for `MultimodalMixtureClassifier` (experts: image, text). Preprocessing
(alpha compositing on white, resize, scaling, tokenization) runs in the graph with TensorFlow and
TF Text ops (`MultimodalClassifierPreprocessor`). Bad inputs fail with `InvalidArgumentError`
naming the problem: images that are not 3 or 4 channels or have an empty side, a batch size that
differs between images and names, an empty name, bytes that are not UTF-8, undecodable image bytes.

`MultimodalMoEClassifier` also serves `routing(images, names)`: `padding_mask [b, p + s]`,
`modality_ids [p + s]` (1 image patch, 0 text token) and, per MoE layer, `<layer>_expert_ids` and
`<layer>_expert_weights [b, p + s, k]` from the backbone's `call_with_routing`.

Names are cut to `64 * sequence_length` characters before tokenizing (`keras_moe.export.text_bounds`).
"""

import tensorflow as tf

from keras_moe.export import check_strings, register_signatures, require_preprocessor, routing_outputs
from keras_moe.export.text_bounds import cut_text
from keras_moe.layers.search import routing_statistics
from keras_moe.models.multimodal.classifiers import MultimodalMixtureClassifier, MultimodalMoEClassifier
from keras_moe.models.multimodal.preprocessor import prepare_images

IMAGES_SPEC = tf.TensorSpec([None, None, None, None], tf.uint8, name="images")
PNG_SPEC = tf.TensorSpec([None], tf.string, name="png_bytes")
NAMES_SPEC = tf.TensorSpec([None], tf.string, name="names")


def check_images(images, names):
    """uint8 `[b, h, w, 3 | 4]` with non-empty sides and one image per name."""
    shape = tf.shape(images)
    rank = tf.debugging.Assert(tf.equal(tf.size(shape), 4), [
        "`images` must have rank 4, [batch, height, width, channels]; received shape", shape])
    with tf.control_dependencies([rank]):
        shape = tf.concat([shape, tf.zeros([4], tf.int32)], axis=0)[:4]  # safe to index after the rank check
    checks = [
        tf.debugging.Assert(
            tf.logical_or(tf.equal(shape[3], 3), tf.equal(shape[3], 4)),
            ["`images` must have 3 (RGB) or 4 (RGBA) channels, shape [batch, height, width, channels]; received shape", shape],
        ),
        tf.debugging.Assert(
            tf.logical_and(shape[1] > 0, shape[2] > 0),
            ["`images` must have a height and width of at least 1; received shape", shape],
        ),
        tf.debugging.Assert(
            tf.equal(shape[0], tf.shape(names)[0]),
            ["`images` and `names` must hold the same number of examples; received images of shape", shape,
             "and names of shape", tf.shape(names)],
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def decode_images(png, image_size):
    """Encoded images `[b]` -> float32 `[b, image_size, image_size, 3]`, each decoded as RGBA and
    prepared like raw images (`prepare_images`: composited on white, resized, scaled)."""

    def decode(data):
        image = tf.io.decode_image(data, channels=4, expand_animations=False)
        return prepare_images(image[None], image_size)[0]

    return tf.map_fn(decode, png, fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def multimodal_signatures(model):
    preprocessor = require_preprocessor(model, "raw images and names")
    class_names = tf.constant(model.class_names or [str(i) for i in range(model.num_classes)])
    mixture = isinstance(model, MultimodalMixtureClassifier)

    def predict(features):
        with routing_statistics(model, enabled=False):
            logits = model(features, training=False)
        outputs = {}
        if mixture:
            outputs["gate_weights"] = tf.cast(logits["gate_weights"], tf.float32)
            logits = logits["logits"]
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        outputs.update({"probabilities": probabilities, "class_ids": class_ids, "labels": tf.gather(class_names, class_ids)})
        return outputs

    def checked_names(names):  # cut to the context before tokenizing (keras_moe.export.text_bounds)
        return cut_text(check_strings(names, "names"), preprocessor.sequence_length, keep="first")

    def features(images, names):
        names = checked_names(names)
        images = check_images(images, names)
        return preprocessor({"images": images, "names": names})

    @tf.function(input_signature=[IMAGES_SPEC, NAMES_SPEC])
    def serving_default(images, names):
        return predict(features(images, names))

    @tf.function(input_signature=[PNG_SPEC, NAMES_SPEC])
    def serve_png(png_bytes, names):
        png = png_bytes
        names = checked_names(names)
        tf.debugging.Assert(tf.equal(tf.shape(png)[0], tf.shape(names)[0]),
                            ["`png_bytes` and `names` must hold the same number of examples; received shapes", tf.shape(png),
                             tf.shape(names)])
        images = decode_images(png, int(preprocessor.output_image_size))
        placeholder = tf.zeros(tf.stack([tf.shape(names)[0], 1, 1, 3]), tf.uint8)
        features = dict(preprocessor({"images": placeholder, "names": names}))  # tokenizes the names
        features["images"] = images
        return predict(features)

    signatures = {"serving_default": serving_default, "serve_png": serve_png}
    if isinstance(model, MultimodalMoEClassifier):

        @tf.function(input_signature=[IMAGES_SPEC, NAMES_SPEC])
        def routing(images, names):
            inputs = features(images, names)
            with routing_statistics(model, enabled=False):
                _, padding_mask, routings = model.backbone.call_with_routing(inputs, training=False)
            outputs = {"padding_mask": tf.cast(padding_mask, tf.bool), "modality_ids": model.backbone.modality_ids()}
            outputs.update(routing_outputs(routings, tf.shape(padding_mask)))
            return outputs

        signatures["routing"] = routing
    return signatures


register_signatures(MultimodalMoEClassifier)(multimodal_signatures)
register_signatures(MultimodalMixtureClassifier)(multimodal_signatures)
