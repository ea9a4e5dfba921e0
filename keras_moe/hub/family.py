"""A keras-hub MoE family: its backbone and tasks, and the sparse classes its layers become.

Axis letters: `t` tokens, `e` experts, `h` hidden.

How `keras_moe.hub` makes a keras-hub model sparse: every MoE layer of the model (the block that
routes, the layer that holds the stacked expert weights) becomes an instance of a keras-moe
subclass of its own keras-hub class, by class promotion (`layer.__class__ = Sparse...`). The
subclass overrides only `call`: the router's logits come from keras-hub's own router layer, the
routing rule is keras-moe's (`softmax_top_k_routing`), and the experts compute through keras-moe's
`ExpertMath` (dropless, blocked or capacity dispatch) on keras-hub's own variables, in keras-hub's
own layout. Nothing is copied or re-created: the layer keeps its variables, names and tracking,
keras-hub's decoders call it as before (their `isinstance` checks still hold), and the weights
file has exactly keras-hub's layout. The backbone and task become registered subclasses
(`keras_moe>Sparse<Name>`) whose config records the dispatch options, so a saved sparse model
loads back sparse, with no patch of keras-hub.

A family is one file: a `Family` with its keras-hub classes and the promotions of its layers,
passed to `register`.
"""

from keras import ops

from keras_moe.routing.common import DispatchOptions

DISPATCH_DEFAULTS = {"dispatch": "auto", "train_capacity_factor": 1.25, "eval_capacity_factor": 2.0, "min_expert_capacity": 4}


class SparseMoEBlock:
    """Mixin of the promoted keras-hub MoE layers: the dispatch options and the sparse forward pass."""

    sparse_moe = DISPATCH_DEFAULTS

    def dispatch_options(self, training):
        options = self.sparse_moe
        factor = options["train_capacity_factor"] if training else options["eval_capacity_factor"]
        return DispatchOptions(options["dispatch"], factor, options["min_expert_capacity"], bool(training))

    def sparse_experts(self, tokens, routing, experts, mask=None, training=False):
        """`[t, h]` outputs of `experts` on the tokens' chosen experts (`routing`: `TokenChoiceRouting`)."""
        return routing.dispatch(tokens, experts, self.dispatch_options(training), mask).outputs


def token_mask(mask, num_tokens):
    """A keras-hub block's mask as float32 `[t]` (None stays None): `[b, s]` padding or `[b, s, s]`
    attention masks (a token counts when it attends to any position, keras-hub's Qwen rule)."""
    if mask is None:
        return None
    if len(mask.shape) == 3:
        mask = ops.any(ops.cast(mask, "bool"), axis=-1)
    return ops.reshape(ops.cast(mask, "float32"), (num_tokens,))


def dense_scores(routing, num_experts):
    """`[t, e]` combine weights with zeros for experts not chosen (what keras-hub's routers return)."""
    one_hot = ops.one_hot(routing.expert_index, num_experts, dtype=routing.expert_weight.dtype)
    return ops.sum(one_hot * routing.expert_weight[:, :, None], axis=1)


class Family:
    """One keras-hub MoE family.

    Args:
        name: str, e.g. `"mixtral"`.
        backbone: the keras-hub backbone class.
        tasks: keras-hub task classes built on it (e.g. its `CausalLM`).
        promotions: `{keras-hub layer class: keras-moe subclass}` for the MoE layers.
        expert_layer_names: names of the expert layers, added to the backbone's LoRA targets.
        prepare: optional `prepare(backbone)`, run after promotion, for what a layer must know of its
            neighbours (Gemma 4's expert bank reads its router's top-k).
    """

    def __init__(self, name, backbone, tasks, promotions, expert_layer_names, prepare=None):
        self.name = name
        self.prepare = prepare
        self.backbone = backbone
        self.tasks = tuple(tasks)
        self.promotions = dict(promotions)
        self.expert_layer_names = tuple(expert_layer_names)
        self.sparse_backbone = None  # set by `register`
        self.sparse_tasks = {}

    def moe_layers(self, backbone):
        """The backbone's layers this family promotes (already promoted ones included)."""
        sparse = tuple(self.promotions.values())
        return [layer for layer in backbone._flatten_layers(include_self=False, recursive=True)
                if type(layer) in self.promotions or isinstance(layer, sparse)]

    def promote_layers(self, backbone, options):
        layers = self.moe_layers(backbone)
        if not layers:
            raise ValueError(
                f"This {type(backbone).__name__} has no MoE block to make sparse (a {self.name} model built "
                "without experts?). keras_moe.hub.upcycle turns a dense model into an MoE model."
            )
        for layer in layers:
            if type(layer) in self.promotions:
                layer.__class__ = self.promotions[type(layer)]
            layer.sparse_moe = dict(options)
        if self.prepare is not None:
            self.prepare(backbone)
        return layers


def promote(obj, cls):
    """`obj` becomes an instance of `cls`, a subclass of its class that adds behaviour, not state."""
    if not isinstance(obj, cls):
        if not issubclass(cls, type(obj)):
            raise TypeError(f"Cannot make a {type(obj).__name__} a {cls.__name__}: not one of its subclasses.")
        obj.__class__ = cls
    return obj

