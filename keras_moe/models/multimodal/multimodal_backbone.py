"""One sparse transformer over image patches and text tokens (LIMoE style), or with modality experts.

Axis letters: `b` batch, `p` image patches, `s` text tokens, `h` hidden.
"""

import keras
import keras_hub
from keras import ops

from keras_moe import routing
from keras_moe.experts.feed_forward import FeedForward
from keras_moe.layers.modality_moe_layer import ModalityMoELayer
from keras_moe.models.moe_transformer.moe_transformer_backbone import is_moe_block
from keras_moe.models.moe_transformer.transformer_block import make_norm
from keras_moe.models.multimodal.layers import IMAGE, MODALITIES, TEXT, ModalityDropout, MultimodalTransformerBlock, PatchEmbedding
from keras_moe.utils.validation import check_positive_int

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


@keras.saving.register_keras_serializable(package="keras_moe")
class MultimodalMoEBackbone(keras_hub.models.Backbone):
    """Image patches and text tokens in one sequence through MoE transformer blocks.

    The image is cut into patches (`PatchEmbedding`, ViT), the name is embedded token by token;
    both get learned positions and a modality-type embedding and are concatenated, image first:
    `[b, p + s, h]`. Every MoE block is a `ModalityMoELayer` that sees each token's modality id:

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
        num_experts: int, experts per MoE block (0: dense). top_k: int. router: router spec.
        expert_modalities: None or a list of `num_experts` of `"text"`/`"image"`/`"any"`.
        activation, num_shared_experts, dispatch, train_capacity_factor, eval_capacity_factor,
            min_expert_capacity: see `MoELayer`.
        num_dense_layers, moe_layer_interval: MoE placement, as in `MoETransformerBackbone`.
        local_entropy_loss_weight, global_entropy_loss_weight, global_entropy_threshold: LIMoE losses.
        modalities: the inputs used, a subset of `["image", "text"]`.
        modality_dropout: float in [0, 0.5], see `ModalityDropout` (both modalities only).
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
        top_k=1,
        router="top_k",
        expert_modalities=None,
        activation="gelu",
        num_shared_experts=0,
        dispatch="dropless",
        train_capacity_factor=1.25,
        eval_capacity_factor=2.0,
        min_expert_capacity=4,
        num_dense_layers=0,
        moe_layer_interval=1,
        local_entropy_loss_weight=0.0,
        global_entropy_loss_weight=0.0,
        global_entropy_threshold=None,
        modalities=("image", "text"),
        modality_dropout=0.0,
        num_channels=3,
        stem_filters=(),
        normalization="layer",
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        dtype=None,
        **kwargs,
    ):
        for name, value in (("vocabulary_size", vocabulary_size), ("sequence_length", sequence_length),
                            ("num_layers", num_layers), ("num_heads", num_heads), ("hidden_dim", hidden_dim),
                            ("intermediate_dim", intermediate_dim), ("moe_layer_interval", moe_layer_interval),
                            ("num_channels", num_channels)):
            check_positive_int(name, value)
        check_positive_int("num_experts", num_experts, allow_zero=True)
        check_positive_int("num_dense_layers", num_dense_layers, allow_zero=True)
        if hidden_dim % num_heads:
            raise ValueError(f"`hidden_dim` must be a multiple of `num_heads`. Received: hidden_dim={hidden_dim}, num_heads={num_heads}")
        modalities = list(modalities)
        if not modalities or len(set(modalities)) != len(modalities) or not set(modalities) <= set(MODALITIES):
            raise ValueError(f"`modalities` must be a non-empty subset of {sorted(MODALITIES)}. Received: modalities={modalities}")
        modalities = [m for m in ("image", "text") if m in modalities]
        if modality_dropout and len(modalities) < 2:
            raise ValueError(f"`modality_dropout` needs both modalities. Received: modalities={modalities}, modality_dropout={modality_dropout}")
        expert_ids = expert_modality_ids(expert_modalities)

        # === Layers ===
        self.patch_embedding = None
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
        self.transformer_layers = []
        for i in range(num_layers):
            if is_moe_block(i, num_experts, num_dense_layers, moe_layer_interval):
                feed_forward = ModalityMoELayer(
                    num_experts, intermediate_dim, num_modalities=len(MODALITIES), expert_modalities=expert_ids,
                    local_entropy_loss_weight=local_entropy_loss_weight, global_entropy_loss_weight=global_entropy_loss_weight,
                    global_entropy_threshold=global_entropy_threshold, top_k=top_k,
                    router=routing.get(router, num_experts=num_experts, top_k=top_k), activation=activation,
                    num_shared_experts=num_shared_experts, dispatch=dispatch, train_capacity_factor=train_capacity_factor,
                    eval_capacity_factor=eval_capacity_factor, min_expert_capacity=min_expert_capacity,
                    kernel_initializer=kernel_initializer, dtype=dtype, name=f"moe_{i}",
                )
            else:
                feed_forward = FeedForward(intermediate_dim, activation=activation, kernel_initializer=kernel_initializer,
                                           dtype=dtype, name=f"ffn_{i}")
            self.transformer_layers.append(MultimodalTransformerBlock(
                num_heads, feed_forward, normalization=normalization, layer_norm_epsilon=layer_norm_epsilon, dropout=dropout,
                kernel_initializer=kernel_initializer, dtype=dtype, name=f"block_{i}",
            ))
        self.layer_norm = make_norm(normalization, layer_norm_epsilon, dtype, "final_norm")

        # === Functional Model ===
        inputs = {  # all three always (unused ones stay unconnected), so every model takes the same inputs
            "images": keras.Input(shape=(image_size, image_size, num_channels), name="images"),
            "token_ids": keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input(shape=(sequence_length,), dtype="int32", name="padding_mask"),
        }
        parts, masks, ids = [], [], []
        if "image" in modalities:
            patches = self.patch_embedding(inputs["images"])
            parts.append(patches)
            masks.append(ops.ones_like(patches[:, :, 0]))
            ids.append(ops.full_like(ops.cast(patches[:, :, 0], "int32"), IMAGE))
        if "text" in modalities:
            tokens = self.token_embedding(inputs["token_ids"])
            parts.append(tokens + self.text_position_embedding(tokens))
            masks.append(ops.cast(inputs["padding_mask"], tokens.dtype))
            ids.append(ops.full_like(inputs["token_ids"], TEXT))
        concat = (lambda xs: ops.concatenate(xs, axis=1)) if len(parts) > 1 else (lambda xs: xs[0])
        hidden, padding_mask, modality_ids = concat(parts), concat(masks), concat(ids)
        hidden = self.embedding_dropout(hidden + self.modality_embedding(modality_ids))
        padding_mask = self.modality_dropout_layer(padding_mask, modality_ids)
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
        self.num_experts = num_experts
        self.top_k = top_k
        self.router = router
        self.expert_modalities = None if expert_modalities is None else list(expert_modalities)
        self.activation = activation
        self.num_shared_experts = num_shared_experts
        self.dispatch = dispatch
        self.train_capacity_factor = train_capacity_factor
        self.eval_capacity_factor = eval_capacity_factor
        self.min_expert_capacity = min_expert_capacity
        self.num_dense_layers = num_dense_layers
        self.moe_layer_interval = moe_layer_interval
        self.local_entropy_loss_weight = local_entropy_loss_weight
        self.global_entropy_loss_weight = global_entropy_loss_weight
        self.global_entropy_threshold = global_entropy_threshold
        self.modalities = modalities
        self.modality_dropout = modality_dropout
        self.num_channels = num_channels
        self.stem_filters = list(stem_filters)
        self.normalization = normalization
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = kernel_initializer

    @property
    def num_patches(self):
        return 0 if self.patch_embedding is None else self.patch_embedding.num_patches

    @property
    def moe_layers(self):
        return [block.feed_forward for block in self.transformer_layers if block.is_moe]

    def modality_ids(self):
        """int `[p + s]`: the modality of each position of the sequence (image patches first)."""
        ids = [IMAGE] * self.num_patches + ([TEXT] * self.sequence_length if "text" in self.modalities else [])
        return ops.convert_to_tensor(ids, "int32")

    def get_config(self):
        config = super().get_config()
        router = self.router
        if isinstance(router, keras.layers.Layer):
            router = keras.saving.serialize_keras_object(router)
        config.update({
            "vocabulary_size": self.vocabulary_size,
            "sequence_length": self.sequence_length,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "num_experts": self.num_experts,
            "top_k": self.top_k,
            "router": router,
            "expert_modalities": self.expert_modalities,
            "activation": self.activation,
            "num_shared_experts": self.num_shared_experts,
            "dispatch": self.dispatch,
            "train_capacity_factor": self.train_capacity_factor,
            "eval_capacity_factor": self.eval_capacity_factor,
            "min_expert_capacity": self.min_expert_capacity,
            "num_dense_layers": self.num_dense_layers,
            "moe_layer_interval": self.moe_layer_interval,
            "local_entropy_loss_weight": self.local_entropy_loss_weight,
            "global_entropy_loss_weight": self.global_entropy_loss_weight,
            "global_entropy_threshold": self.global_entropy_threshold,
            "modalities": self.modalities,
            "modality_dropout": self.modality_dropout,
            "num_channels": self.num_channels,
            "stem_filters": self.stem_filters,
            "normalization": self.normalization,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": self.kernel_initializer,
        })
        return config


def multimodal_backbone_parameter_count(**config):
    """`{"total", "active"}` parameters of a `MultimodalMoEBackbone` from its constructor arguments,
    without building it (equals `backbone.count_params()`; tested). `active`: per token, routed
    experts count `top_k / num_experts` of their weights."""
    import inspect

    from keras_moe.models.moe_transformer.param_count import feed_forward_parameter_count

    defaults = {n: p.default for n, p in inspect.signature(MultimodalMoEBackbone.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    c = {**defaults, **config}
    h, f, e = c["hidden_dim"], c["intermediate_dim"], c["num_experts"]
    norm = h if c["normalization"] == "rms" else 2 * h
    total = len(MODALITIES) * h + norm  # modality embedding, final norm
    if "image" in c["modalities"]:
        channels = c["num_channels"]
        for width in c["stem_filters"]:
            total += 9 * channels * width + width
            channels = width
        total += c["patch_size"] ** 2 * channels * h + h + (c["image_size"] // c["patch_size"]) ** 2 * h
    if "text" in c["modalities"]:
        total += (c["vocabulary_size"] + c["sequence_length"]) * h
    active = total
    for i in range(c["num_layers"]):
        block = 4 * h * h + 2 * norm
        block_active = block
        if is_moe_block(i, e, c["num_dense_layers"], c["moe_layer_interval"]):
            router = routing.get(c["router"], num_experts=e, top_k=c["top_k"])
            experts = e * feed_forward_parameter_count(h, f, c["activation"])
            shared = feed_forward_parameter_count(h, f * c["num_shared_experts"], c["activation"]) if c["num_shared_experts"] else 0
            block += router.parameter_count(h) + experts + shared
            block_active += router.parameter_count(h) + experts * min(1.0, router.experts_per_token / e) + shared
        else:
            ffn = feed_forward_parameter_count(h, f, c["activation"])
            block, block_active = block + ffn, block_active + ffn
        total, active = total + block, active + block_active
    return {"total": int(total), "active": int(round(active))}
