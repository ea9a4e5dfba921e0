"""Registered keras-hub MoE families and the sparse classes made for them.

`register(family)` makes, for the family's backbone and each of its tasks, a registered subclass
(`keras_moe>SparseMixtralBackbone`, `keras_moe>SparseMixtralCausalLM`, ...). A sparse backbone
builds exactly what keras-hub builds, then promotes its MoE layers; its config adds `sparse_moe`
(the dispatch options), so `save_to_preset`, `.keras` and `from_preset` round-trip the sparse
model. A sparse task differs from keras-hub's only in `backbone_cls` (so keras-hub's
`from_preset` finds it for a sparse backbone); `generate`, the cache and the samplers are keras-hub's.
"""

import keras

from keras_moe.hub.family import DISPATCH_DEFAULTS
from keras_moe.models.lora import ExpertLoRABackboneMixin
from keras_moe.routing.token_choice import DISPATCH_MODES
from keras_moe.utils.validation import check_choice, check_positive_float, check_positive_int

FAMILIES = {}  # keras-hub backbone class -> Family


def check_sparse_moe(options):
    """The dispatch options, completed with defaults; each bad value named."""
    options = dict(options or {})
    unknown = set(options) - set(DISPATCH_DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown sparse MoE options {sorted(unknown)}; the options are {sorted(DISPATCH_DEFAULTS)}.")
    options = {**DISPATCH_DEFAULTS, **options}
    check_choice("dispatch", options["dispatch"], tuple(DISPATCH_MODES))
    for key in ("train_capacity_factor", "eval_capacity_factor"):
        options[key] = check_positive_float(key, options[key])
    check_positive_int("min_expert_capacity", options["min_expert_capacity"])
    return options


class SparseBackbone(ExpertLoRABackboneMixin):
    """Mixin of the sparse backbones: build keras-hub's model, then promote its MoE layers."""

    family = None  # the `Family`, set on each registered class

    def __init__(self, *args, sparse_moe=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sparse_moe = check_sparse_moe(sparse_moe)
        self.family.promote_layers(self, self.sparse_moe)

    @property
    def expert_layer_names(self):
        return self.family.expert_layer_names

    def set_sparse_moe(self, options):
        """New dispatch options for every MoE layer (e.g. `{"dispatch": "capacity"}`)."""
        self.sparse_moe = check_sparse_moe({**self.sparse_moe, **dict(options)})
        self.family.promote_layers(self, self.sparse_moe)

    def get_config(self):
        config = super().get_config()
        config["sparse_moe"] = dict(self.sparse_moe)
        return config


def _registered(cls):
    return keras.saving.register_keras_serializable(package="keras_moe", name=cls.__name__)(cls)


def register(family):
    """Registers a keras-hub MoE `Family`: `sparsify` and `from_preset` then accept its models."""
    family.sparse_backbone = _registered(type(
        f"Sparse{family.backbone.__name__}", (SparseBackbone, family.backbone),
        {"family": family, "__module__": __name__, "__doc__": f"{family.backbone.__name__} computing only the chosen experts."},
    ))
    family.sparse_tasks = {
        task: _registered(type(
            f"Sparse{task.__name__}", (task,),
            {"backbone_cls": family.sparse_backbone, "__module__": __name__,
             "__doc__": f"{task.__name__} on a {family.sparse_backbone.__name__}."},
        ))
        for task in family.tasks
    }
    FAMILIES[family.backbone] = family
    return family


def family_of(backbone):
    """The registered family of a keras-hub backbone (or of its sparse form); a clear error otherwise."""
    for cls in type(backbone).__mro__:
        if cls in FAMILIES:
            return FAMILIES[cls]
    supported = ", ".join(sorted(cls.__name__ for cls in FAMILIES))
    raise ValueError(
        f"keras_moe.hub has no adapter for {type(backbone).__name__}. Supported keras-hub MoE backbones: "
        f"{supported}. A dense model can be turned into an MoE model with keras_moe.hub.upcycle; a new family "
        "is one file registered with keras_moe.hub.register."
    )
