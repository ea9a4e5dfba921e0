"""`sparsify` and `from_preset`: keras-hub MoE models that compute only the chosen experts."""

import keras_hub
from keras_hub.src.utils.preset_utils import get_preset_loader

from keras_moe.hub.family import promote
from keras_moe.hub.registry import FAMILIES, check_sparse_moe, family_of

TASKS = ("causal_lm",)


def _backbone(model):
    if isinstance(model, keras_hub.models.Task):
        return model.backbone
    if isinstance(model, keras_hub.models.Backbone):
        return model
    raise ValueError(f"keras_moe.hub.sparsify takes a keras-hub Backbone or task (e.g. a CausalLM). Received: {model!r}")


def sparsify(model, dispatch="auto", **layer_options):
    """Makes a keras-hub MoE model compute only each token's chosen experts, in place.

    Supported: `MixtralBackbone`, `QwenMoeBackbone`, `Qwen3MoeBackbone`, `GptOssBackbone`,
    `Qwen3_5MoeBackbone` and `Gemma4Backbone` built with its MoE block, and tasks on them (their
    `CausalLM`s). The model object is kept: its MoE layers, backbone and task become keras-moe
    subclasses of their own keras-hub classes (`keras_moe.hub.family`), sharing every variable, so
    `generate`, the KV cache, sliding windows, tokenizers and presets work as before; a second copy
    of the weights is never made. Saved with `save_to_preset` or `.keras`, the model loads back sparse
    (with `import keras_moe`).

    Outputs equal keras-hub's at real tokens up to float rounding (keras-hub's routing with
    keras-moe's dispatch; padding tokens go to no expert). Auxiliary load-balancing losses are
    keras-hub's, computed from the same routing.

    XLA: keras-hub's `generate` compiles with `jit_compile="auto"`, which is True on a TensorFlow GPU.
    TensorFlow's dropless dispatch splits rows into per-expert groups of data-dependent sizes, which
    XLA cannot compile; inside a function traced for XLA the `"dropless"` mode therefore runs the
    blocked path (`keras_moe.dispatch.blocked`): also dropless and exact, with static shapes; `"auto"`
    picks static-shape paths there itself. JAX's dropless path (`ragged_dot`) compiles as it is.

    Args:
        model: a keras-hub `Backbone` or `Task` of a supported family.
        dispatch: `"auto"` (default: the fastest exact mode for the backend and token count, see
            `keras_moe.dispatch.choose`), `"dropless"` (exact, grouped), `"blocked"` (exact, static shapes), `"gathered"`
            (exact; reads each choice's weights, for a handful of tokens) or `"capacity"` (static
            shapes; tokens past an expert's capacity are dropped, so outputs can differ).
        **layer_options: `train_capacity_factor`, `eval_capacity_factor`, `min_expert_capacity` (capacity mode).

    Returns:
        `model`, now sparse.

    Example:

    ```python
    backbone = keras_hub.models.MixtralBackbone(
        vocabulary_size=64, num_layers=1, num_query_heads=2, hidden_dim=8, intermediate_dim=16,
        num_key_value_heads=1, num_experts=4, top_k=2)
    x = {"token_ids": np.ones((1, 4), "int32"), "padding_mask": np.ones((1, 4), "int32")}
    dense = keras.ops.convert_to_numpy(backbone(x))
    keras_moe.hub.sparsify(backbone)
    assert np.allclose(keras.ops.convert_to_numpy(backbone(x)), dense, atol=1e-5)
    ```
    """
    backbone = _backbone(model)
    family = family_of(backbone)
    options = check_sparse_moe({"dispatch": dispatch, **layer_options})
    if isinstance(backbone, family.sparse_backbone):
        backbone.set_sparse_moe(options)
    else:
        family.promote_layers(backbone, options)  # raises, changing nothing, when there is no MoE block
        promote(backbone, family.sparse_backbone)
        backbone.sparse_moe = options
    if model is not backbone:
        sparse_task = next((family.sparse_tasks[cls] for cls in type(model).__mro__ if cls in family.sparse_tasks), None)
        if sparse_task is not None:
            promote(model, sparse_task)
    _forget_compiled_functions(model)
    return model


def _forget_compiled_functions(model):
    """Functions traced before the layers changed class would keep running the dense blocks."""
    for name in ("train_function", "test_function", "predict_function", "generate_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


def from_preset(preset, task=None, dispatch=None, **kwargs):
    """Loads a keras-hub preset (a directory written by `save_to_preset`, or any handle keras-hub
    accepts) as a sparse model.

    A preset saved from a sparse model names its sparse class and is built sparse directly; a
    keras-hub preset is built as keras-hub builds it and sparsified in place (its weights are loaded
    once and never copied).

    Args:
        preset: the preset handle or directory.
        task: None (the backbone), `"causal_lm"`, or a keras-hub task class.
        dispatch: see `sparsify`; None keeps a sparse preset's own options (else `"auto"`).
        **kwargs: for keras-hub's `from_preset` (e.g. `load_weights=False`, `dtype`).
    """
    if task is None:
        model = keras_hub.models.Backbone.from_preset(preset, **kwargs)
    elif isinstance(task, str):
        if task not in TASKS:
            raise ValueError(f"Unknown task {task!r}; use one of {list(TASKS)} or a keras-hub task class.")
        model = _family_causal_lm(preset).from_preset(preset, **kwargs)
    else:
        model = task.from_preset(preset, **kwargs)
    backbone = _backbone(model)
    if dispatch is None and isinstance(backbone, family_of(backbone).sparse_backbone):
        return sparsify(model, **backbone.sparse_moe)
    return sparsify(model, dispatch=dispatch or "auto")


def _family_causal_lm(preset):
    """The preset family's own CausalLM class (keras-hub's `CausalLM.from_preset` can pick another
    task of the same backbone, e.g. Gemma 4's assistant model)."""
    backbone_cls = get_preset_loader(preset).check_backbone_class()
    for cls in backbone_cls.__mro__:
        family = FAMILIES.get(cls)
        if family is not None:
            task = family.tasks[0]
            return family.sparse_tasks[task] if issubclass(backbone_cls, family.sparse_backbone) else task
    supported = ", ".join(sorted(cls.__name__ for cls in FAMILIES))
    raise ValueError(f"The preset {preset!r} holds a {backbone_cls.__name__}; keras_moe.hub supports {supported}.")
