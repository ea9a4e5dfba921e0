"""Image-to-name retrieval: a two-tower contrastive model (CLIP, Radford et al. 2021; the
contrastive objective of LIMoE, Mustafa et al. 2022) and recall@k.

The towers are the image expert (small CNN) and the name expert (bag of embeddings) of form 3
without their softmax heads (`image_tower`, `text_tower`); a linear projection per tower maps its
features to a shared, L2-normalised embedding. The similarity logits of a batch of `b` pairs are
`exp(logit_scale) * I T^T` `[b, b]` (a learned temperature, `exp(logit_scale)` clipped at
`max_logit_scale`); the loss is the symmetric InfoNCE: the mean of the cross-entropies of each
image over the batch's names and of each name over the batch's images, the true pair on the diagonal.
"""

import copy
import math

import keras
import numpy as np
from keras import ops

from keras_moe.models.multimodal.classifiers import image_expert, text_expert
from keras_moe.utils.validation import check_positive_float, check_positive_int


def image_tower(image_size=32, filters=(32, 64, 128), dropout=0.1, translation=0.1, name="image_tower"):
    """`image_expert` without its softmax head: images `[b, s, s, 3]` -> features `[b, filters[-1]]`."""
    expert = image_expert(image_size, num_classes=1, filters=filters, dropout=dropout, translation=translation)
    return keras.Model(expert.input, expert.layers[-2].output, name=name)


def text_tower(vocabulary_size, sequence_length=16, hidden_dim=64, dropout=0.1, name="text_tower"):
    """`text_expert` without its softmax head: token ids `[b, s]` (0 = padding) -> features `[b, hidden_dim]`."""
    expert = text_expert(vocabulary_size, sequence_length, num_classes=1, hidden_dim=hidden_dim, dropout=dropout)
    return keras.Model(expert.input, expert.layers[-2].output, name=name)


def _check_tower(name, tower):
    if not isinstance(tower, keras.Model) or len(tower.outputs or []) != 1 or len(tower.outputs[0].shape) != 2:
        raise ValueError(f"`{name}` must be a functional Keras model with one output `[b, features]`. Received: {name}={tower!r}")
    if tower.outputs[0].shape[-1] is None:
        raise ValueError(f"`{name}` must have a known feature size. Received output shape {tower.outputs[0].shape}")
    return tower


@keras.saving.register_keras_serializable(package="keras_moe")
class ContrastiveDualEncoder(keras.Model):
    """Two towers, a linear projection each to a shared L2-normalised embedding, a learned temperature.

    Args:
        image_tower: functional Keras model, images `[b, H, W, 3]` -> `[b, d_image]` (e.g. `image_tower()`).
        text_tower: functional Keras model, token ids `[b, s]` -> `[b, d_text]` (e.g. `text_tower(...)`).
        embedding_dim: int, shared embedding size.
        temperature: float > 0, initial softmax temperature (CLIP: 0.07, i.e. logit scale 1 / 0.07).
        max_logit_scale: float > 0, upper bound of the logit scale `1 / temperature` (CLIP: 100).

    Inputs: `{"images": [b, H, W, 3], "token_ids": [b, s]}` (a `MultimodalClassifierPreprocessor`'s
    output; other keys such as `padding_mask` are ignored). Output: similarity logits `[b, b]`,
    row `i` = image `i` against every name of the batch. `fit` needs no labels (they are ignored):
    the loss is the symmetric InfoNCE of `contrastive_loss`, whatever `compile` is given.
    """

    def __init__(self, image_tower, text_tower, embedding_dim=64, temperature=0.07, max_logit_scale=100.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(image_tower, dict):  # copies: deserialising consumes the nested config
            image_tower = keras.saving.deserialize_keras_object(copy.deepcopy(image_tower))
        if isinstance(text_tower, dict):
            text_tower = keras.saving.deserialize_keras_object(copy.deepcopy(text_tower))
        self.image_tower = _check_tower("image_tower", image_tower)
        self.text_tower = _check_tower("text_tower", text_tower)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.temperature = check_positive_float("temperature", temperature)
        self.max_logit_scale = check_positive_float("max_logit_scale", max_logit_scale)
        if 1.0 / self.temperature > self.max_logit_scale:
            raise ValueError(f"`1 / temperature` must not exceed `max_logit_scale`. Received: temperature={temperature}, "
                             f"max_logit_scale={max_logit_scale}")
        self.image_projection = keras.layers.Dense(self.embedding_dim, use_bias=False, name="image_projection")
        self.text_projection = keras.layers.Dense(self.embedding_dim, use_bias=False, name="text_projection")
        self.image_projection.build(tuple(image_tower.outputs[0].shape))
        self.text_projection.build(tuple(text_tower.outputs[0].shape))
        self.logit_scale = self.add_weight(shape=(), name="logit_scale",
                                           initializer=keras.initializers.Constant(math.log(1.0 / self.temperature)))
        self.built = True

    def encode_images(self, images, training=False):
        """L2-normalised image embeddings `[b, embedding_dim]`."""
        return ops.normalize(self.image_projection(self.image_tower(images, training=training)), axis=-1)

    def encode_texts(self, token_ids, training=False):
        """L2-normalised name embeddings `[b, embedding_dim]`."""
        return ops.normalize(self.text_projection(self.text_tower(token_ids, training=training)), axis=-1)

    def scale(self):
        """The logit scale `1 / temperature`, clipped at `max_logit_scale`."""
        return ops.minimum(ops.exp(self.logit_scale), self.max_logit_scale)

    def call(self, inputs, training=False):
        images = self.encode_images(inputs["images"], training=training)
        texts = self.encode_texts(inputs["token_ids"], training=training)
        return self.scale() * ops.matmul(images, ops.transpose(texts))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        loss = contrastive_loss(y_pred)
        if self.losses:
            loss = loss + ops.sum(ops.stack(self.losses))
        return loss

    def compute_output_shape(self, input_shape):
        return (input_shape["images"][0], input_shape["token_ids"][0])

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_tower": keras.saving.serialize_keras_object(self.image_tower),
            "text_tower": keras.saving.serialize_keras_object(self.text_tower),
            "embedding_dim": self.embedding_dim,
            "temperature": self.temperature,
            "max_logit_scale": self.max_logit_scale,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def contrastive_loss(logits):
    """Symmetric InfoNCE of square similarity logits `[b, b]` (true pairs on the diagonal): the mean of
    the image-to-name and name-to-image cross-entropies (CLIP's loss, Radford et al. 2021, fig. 3)."""
    logits = ops.cast(logits, "float32")
    labels = ops.arange(ops.shape(logits)[0])
    image_to_text = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    text_to_image = ops.sparse_categorical_crossentropy(labels, ops.transpose(logits), from_logits=True)
    return 0.5 * (ops.mean(image_to_text) + ops.mean(text_to_image))


def recall_at_k(image_embeddings, text_embeddings, ks=(1, 5)):
    """Image-to-text recall@k of paired embeddings (numpy): row `i` of both arrays is one pair.

    Each image ranks all texts by dot product (cosine similarity for L2-normalised embeddings);
    recall@k is the share of images whose own text is among the first `k`. Ties count against the
    image (its own text ranks after every other text with the same similarity), so constant
    embeddings score 0 for every `k < n`. Returns `{"recall@k": float}` per `k`.
    """
    images = np.asarray(image_embeddings, dtype="float64")
    texts = np.asarray(text_embeddings, dtype="float64")
    if images.ndim != 2 or texts.ndim != 2 or images.shape != texts.shape or images.shape[0] == 0:
        raise ValueError(f"`image_embeddings` and `text_embeddings` must be non-empty 2-D arrays of one shape. "
                         f"Received shapes {images.shape} and {texts.shape}")
    ks = tuple(ks)
    if not ks or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k > 0 for k in ks):
        raise ValueError(f"`ks` must be positive ints. Received: ks={ks!r}")
    similarity = images @ texts.T
    own = np.diag(similarity)[:, None]
    others = ~np.eye(len(images), dtype=bool)
    rank = np.sum((similarity >= own) & others, axis=1)  # texts ranked at or above the own text
    return {f"recall@{k}": float(np.mean(rank < k)) for k in ks}
