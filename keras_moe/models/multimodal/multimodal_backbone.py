"""One sparse transformer over image patches and text tokens (LIMoE style), or with modality experts.

Axis letters: `b` batch, `p` image patches, `s` text tokens, `h` hidden.
"""

import keras
import keras_hub
from keras import ops

from keras_moe.layers.modality_moe_layer import ModalityMoELayer
from keras_moe.models.feed_forward_stack import (
    MOE_DEFAULTS,
    MoEStackMixin,
    check_moe_arguments,
    make_feed_forward,
)
from keras_moe.models.moe_transformer.transformer_block import MoETransformerBlock, make_norm, norm_parameter_count
from keras_moe.models.multimodal.layers import IMAGE, MODALITIES, TEXT, ModalityDropout, PatchEmbedding, image_augmentation_layers
from keras_moe.routing import reject_top_k
from keras_moe.utils.arguments import complete_arguments
from keras_moe.utils.validation import check_fraction, check_positive_int

EXPERT_MODALITIES = {"text": TEXT, "image": IMAGE, "any": -1}


def expert_modality_ids(expert_modalities):
    """`["text", "image", "any", ...]` (or ints) -> ints (0 text, 1 image, -1 any); None stays None."""
    if expert_modalities is None:
        return None
    ids = []
    for value in expert_modalities:
        if isinstance(value, str) and value in EXPERT_MODALITIES:
            ids.append(EXPERT_MODALITIES[value])
        elif isinstance(value, int) and not isinstance(value, bool) and value in EXPERT_MODALITIES.values():
            ids.append(value)
        else:
            raise ValueError(f"Each of `expert_modalities` must be 'text', 'image' or 'any'. Received: {list(expert_modalities)}")
    return ids


def _check_config(c):
    c = dict(c)
    for name in ("vocabulary_size", "sequence_length", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                 "num_channels"):
        check_positive_int(name, c[name])
    c.update(check_moe_arguments({key: c[key] for key in MOE_DEFAULTS}))
    check_fraction("dropout", c["dropout"])
    if c["hidden_dim"] % c["num_heads"]:
        raise ValueError(
            f"`hidden_dim` must be a multiple of `num_heads`. Received: hidden_dim={c['hidden_dim']}, num_heads={c['num_heads']}"
        )
    modalities = list(c["modalities"])
    if not modalities or len(set(modalities)) != len(modalities) or not set(modalities) <= set(MODALITIES):
        raise ValueError(f"`modalities` must be a non-empty subset of {sorted(MODALITIES)}. Received: modalities={modalities}")
    c["modalities"] = [m for m in ("image", "text") if m in modalities]
    check_fraction("image_augmentation", c["image_augmentation"])
    if c["image_augmentation"] and "image" not in c["modalities"]:
        raise ValueError(f"`image_augmentation` needs the image modality. Received: modalities={c['modalities']}, "
                         f"image_augmentation={c['image_augmentation']}")
    if c["modality_dropout"] and len(c["modalities"]) < 2:
        raise ValueError(
            f"`modality_dropout` needs both modalities. Received: modalities={c['modalities']}, modality_dropout={c['modality_dropout']}"
        )
    return c


def _blocks(c, dtype=None):
    """The (unbuilt) encoder blocks of config `c`: bidirectional, no rotary, modality-aware MoE layers."""
    moe = {key: c[key] for key in MOE_DEFAULTS}
    modality_arguments = {
        "num_modalities": len(MODALITIES),
        "expert_modalities": expert_modality_ids(c["expert_modalities"]),
        "local_entropy_loss_weight": c["local_entropy_loss_weight"],
        "global_entropy_loss_weight": c["global_entropy_loss_weight"],
        "global_entropy_threshold": c["global_entropy_threshold"],
    }
    return [
        MoETransformerBlock(
            c["num_heads"], c["num_heads"],
            make_feed_forward(i, c["intermediate_dim"], moe, None, c["kernel_initializer"], dtype,
                              moe_class=ModalityMoELayer, **modality_arguments),
            causal=False, normalization=c["normalization"], layer_norm_epsilon=c["layer_norm_epsilon"], use_rotary=False,
            dropout=c["dropout"], kernel_initializer=c["kernel_initializer"], dtype=dtype, name=f"block_{i}",
        )
        for i in range(c["num_layers"])
    ]


@keras.saving.register_keras_serializable(package="keras_moe")
class MultimodalMoEBackbone(MoEStackMixin, keras_hub.models.Backbone):
    """Image patches and text tokens in one sequence through MoE transformer blocks.

    The image is cut into patches (`PatchEmbedding`, ViT), the name is embedded token by token;
    both get learned positions and a modality-type embedding and are concatenated, image first:
    `[b, p + s, h]`. The blocks are `MoETransformerBlock`s (bidirectional) whose MoE layers are
    `ModalityMoELayer`s that see each token's modality id:

    - **LIMoE** (`expert_modalities=None`): learned routing over all experts, optionally with
      LIMoE's per-modality local/global entropy losses (`local_entropy_loss_weight`,
      `global_entropy_loss_weight`, `global_entropy_threshold`).
    - **Modality experts** (`expert_modalities=["text", "text", "image", "image", ...]`, `"any"`
      for experts both may use): shared attention, and tokens are routed only among their own
      modality's experts; `num_shared_experts` adds always-on experts.

    `modalities=["image"]` or `["text"]` gives the single-modality model of the same family.

    Args:
        vocabulary_size: int. sequence_length: int, text tokens per example (learned positions).
        image_size: int. patch_size: int. num_channels: int (3: RGB). stem_filters: see `PatchEmbedding`.
        num_layers, num_heads, hidden_dim, intermediate_dim: transformer sizes (`intermediate_dim`
            per expert and for dense blocks).
        num_experts: int, experts per MoE block (0: dense). router: router spec (it sets `top_k`).
        expert_modalities: None or a list of `num_experts` of `"text"`/`"image"`/`"any"`.
        activation, num_shared_experts, dispatch, train_capacity_factor, eval_capacity_factor,
            min_expert_capacity, use_bias: see `MoELayer`.
        num_dense_layers, moe_layer_interval: MoE placement, as in `MoETransformerBackbone`.
        local_entropy_loss_weight, global_entropy_loss_weight, global_entropy_threshold: LIMoE losses.
        modalities: the inputs used, a subset of `["image", "text"]`.
        modality_dropout: float in [0, 0.5], see `ModalityDropout` (both modalities only).
        image_augmentation: float in [0, 1): when > 0 and training, random horizontal flips and
            translations by up to this fraction of the image (filled with white) before the patches,
            the augmentation the CNN image expert uses (`image_expert`); 0 (default) for none.
        normalization: `"layer"` or `"rms"`. dropout, layer_norm_epsilon, kernel_initializer.

    Inputs: `{"images": float [b, image_size, image_size, num_channels], "token_ids": int [b, s],
    "padding_mask": [b, s]}` (always all three; `modalities` says which are used). Outputs: `{"sequence_output":
    [b, p + s, h], "padding_mask": float [b, p + s]}` (the mask after modality dropout).
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        image_size,
        patch_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        num_experts=8,
        router={"class_name": "top_k", "config": {"top_k": 1}},  # noqa: B006 (never mutated)
        expert_modalities=None,
        activation="gelu",
        num_shared_experts=0,
        dispatch="auto",
        train_capacity_factor=1.25,
        eval_capacity_factor=2.0,
        min_expert_capacity=4,
        num_dense_layers=0,
        moe_layer_interval=1,
        use_bias=False,
        local_entropy_loss_weight=0.0,
        global_entropy_loss_weight=0.0,
        global_entropy_threshold=None,
        modalities=("image", "text"),
        modality_dropout=0.0,
        image_augmentation=0.0,
        num_channels=3,
        stem_filters=(),
        normalization="layer",
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        dtype=None,
        **kwargs,
    ):
        reject_top_k(kwargs)
        c = _check_config({k: v for k, v in locals().items() if k not in ("self", "kwargs", "dtype", "__class__")})
        modalities = c["modalities"]

        # === Layers ===
        self.patch_embedding = None
        self.image_augmenters = image_augmentation_layers(image_augmentation, dtype, "image") if image_augmentation else []
        if "image" in modalities:
            self.patch_embedding = PatchEmbedding(image_size, patch_size, hidden_dim, stem_filters=stem_filters,
                                                  kernel_initializer=kernel_initializer, dtype=dtype, name="patch_embedding")
        self.token_embedding = self.text_position_embedding = None
        if "text" in modalities:
            self.token_embedding = keras.layers.Embedding(vocabulary_size, hidden_dim, embeddings_initializer=kernel_initializer,
                                                          dtype=dtype, name="token_embedding")
            self.text_position_embedding = keras_hub.layers.PositionEmbedding(sequence_length, dtype=dtype, name="text_position_embedding")
        self.modality_embedding = keras.layers.Embedding(len(MODALITIES), hidden_dim, embeddings_initializer=kernel_initializer,
                                                         dtype=dtype, name="modality_embedding")
        self.modality_dropout_layer = ModalityDropout(modality_dropout, dtype=dtype, name="modality_dropout")
        self.embedding_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embedding_dropout")
        self.transformer_layers = _blocks(c, dtype)
        self.layer_norm = make_norm(normalization, layer_norm_epsilon, dtype, "final_norm")

        # === Functional Model ===
        inputs = {  # all three always (unused ones stay unconnected), so every model takes the same inputs
            "images": keras.Input(shape=(image_size, image_size, num_channels), name="images"),
            "token_ids": keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input(shape=(sequence_length,), dtype="int32", name="padding_mask"),
        }
        hidden, padding_mask, modality_ids = self._embed(inputs, modalities)
        for block in self.transformer_layers:
            hidden = block(hidden, padding_mask=padding_mask, modality_ids=modality_ids)
        outputs = {"sequence_output": self.layer_norm(hidden), "padding_mask": padding_mask}
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self._set_moe_arguments(c)
        self.expert_modalities = None if expert_modalities is None else list(expert_modalities)
        self.local_entropy_loss_weight = local_entropy_loss_weight
        self.global_entropy_loss_weight = global_entropy_loss_weight
        self.global_entropy_threshold = global_entropy_threshold
        self.modalities = modalities
        self.modality_dropout = modality_dropout
        self.image_augmentation = image_augmentation
        self.num_channels = num_channels
        self.stem_filters = list(stem_filters)
        self.normalization = normalization
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = kernel_initializer

    def _embed(self, inputs, modalities, training=None):
        """`(hidden [b, p + s, h], padding_mask [b, p + s] after modality dropout, modality_ids [b, p + s])`."""
        parts, masks, ids = [], [], []
        if "image" in modalities:
            images = inputs["images"]
            for augmenter in self.image_augmenters:
                images = augmenter(images, training=training)
            patches = self.patch_embedding(images)
            parts.append(patches)
            masks.append(ops.ones_like(patches[:, :, 0]))
            ids.append(ops.full_like(ops.cast(patches[:, :, 0], "int32"), IMAGE))
        if "text" in modalities:
            tokens = self.token_embedding(inputs["token_ids"])
            parts.append(tokens + self.text_position_embedding(tokens))
            masks.append(ops.cast(inputs["padding_mask"], tokens.dtype))
            ids.append(ops.full_like(ops.cast(inputs["token_ids"], "int32"), TEXT))
        concat = (lambda xs: ops.concatenate(xs, axis=1)) if len(parts) > 1 else (lambda xs: xs[0])
        hidden, padding_mask, modality_ids = concat(parts), concat(masks), concat(ids)
        hidden = self.embedding_dropout(hidden + self.modality_embedding(modality_ids), training=training)
        padding_mask = self.modality_dropout_layer(padding_mask, modality_ids, training=training)
        return hidden, padding_mask, modality_ids

    @classmethod
    def parameter_count(cls, **config):
        """`{"total", "active"}` for the constructor's arguments, without allocating weights (each
        layer's own `parameter_count`, composed). Equals `count_params(backbone)`."""
        c = _check_config(complete_arguments(cls, config))
        h = c["hidden_dim"]
        total = len(MODALITIES) * h + norm_parameter_count(c["normalization"], h)  # modality embedding, final norm
        if "image" in c["modalities"]:
            patches = PatchEmbedding(c["image_size"], c["patch_size"], h, stem_filters=c["stem_filters"])
            total += patches.parameter_count(c["num_channels"])
        if "text" in c["modalities"]:
            total += (c["vocabulary_size"] + c["sequence_length"]) * h
        active = total
        for block in _blocks(c):
            count = block.parameter_count(h)
            total, active = total + count["total"], active + count["active"]
        return {"total": int(total), "active": int(round(active))}

    @property
    def num_patches(self):
        return 0 if self.patch_embedding is None else self.patch_embedding.num_patches

    def modality_ids(self):
        """int `[p + s]`: the modality of each position of the sequence (image patches first)."""
        ids = [IMAGE] * self.num_patches + ([TEXT] * self.sequence_length if "text" in self.modalities else [])
        return ops.convert_to_tensor(ids, "int32")

    def call_with_routing(self, inputs, training=False):
        """`(sequence_output [b, p + s, h], padding_mask [b, p + s], {MoE layer name: routing object})`."""
        hidden, padding_mask, modality_ids = self._embed(inputs, self.modalities, training=training)
        routings = {}
        for block in self.transformer_layers:
            hidden, routing = block(hidden, padding_mask=padding_mask, modality_ids=modality_ids, training=training,
                                    return_routing=True)
            if routing is not None:
                routings[block.feed_forward.name] = routing
        return self.layer_norm(hidden), padding_mask, routings

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size,
            "sequence_length": self.sequence_length,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            **self.moe_config(),
            "expert_modalities": self.expert_modalities,
            "local_entropy_loss_weight": self.local_entropy_loss_weight,
            "global_entropy_loss_weight": self.global_entropy_loss_weight,
            "global_entropy_threshold": self.global_entropy_threshold,
            "modalities": self.modalities,
            "modality_dropout": self.modality_dropout,
            "image_augmentation": self.image_augmentation,
            "num_channels": self.num_channels,
            "stem_filters": self.stem_filters,
            "normalization": self.normalization,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": self.kernel_initializer,
        })
        return config
