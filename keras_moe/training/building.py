"""Config -> objects: data, model, optimizer, preprocessor, with errors that name the bad key and value."""

import inspect

import hydra
import keras
import keras_hub
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from keras_moe.training.errors import ConfigError
from keras_moe.training.strategies import check_batch_size, strategy_scope


def instantiate(node, group, **kwargs):
    try:
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"Invalid `{group}` config: {cause}") from error


def build_data(cfg):
    return instantiate(cfg.data, "data")


def build_model(cfg, strategy=None):
    """Model, optimizer and `compile` inside the strategy scope (the global batch must split over its replicas)."""
    batch_size = cfg.get("data", {}).get("batch_size")
    if batch_size is not None:
        try:
            check_batch_size(int(batch_size), strategy)
        except ValueError as error:
            raise ConfigError(f"Invalid `data.batch_size` for `strategy`: {error}") from error
    with strategy_scope(strategy):
        model = instantiate(cfg.model, "model")
        optimizer = build_optimizer(cfg)
        compile_model(model, optimizer, cfg)
    return model


def build_optimizer(cfg):
    """The optimizer; its learning rate (or schedule, sampled over the run) must be >= 0 and not all 0."""
    optimizer = instantiate(cfg.optimizer, "optimizer")
    schedule = optimizer._learning_rate
    total = int(cfg.trainer.epochs) * int(cfg.trainer.steps_per_epoch)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        rates = [float(schedule(step)) for step in sorted({0, 1, total // 10, total // 2, max(total - 1, 0)})]
    else:
        rates = [float(keras.ops.convert_to_numpy(optimizer.learning_rate))]
    if min(rates) < 0 or max(rates) <= 0:
        raise ConfigError(f"Invalid `optimizer` config: the learning rate must be >= 0 and not always 0; over the run it takes {rates}.")
    return optimizer


def resolve_jit_compile(value):
    """`trainer.jit_compile`: a bool, or `"auto"`: XLA on JAX (its normal mode: eager JAX runs op by op,
    about 10x slower here) and not on TensorFlow (its dropless grouped matmuls, the fastest exact
    dispatch there, need dynamic shapes; under XLA `dispatch: auto` falls back to static-shape modes)."""
    if value == "auto":
        return keras.backend.backend() == "jax"
    return bool(value)


def compile_model(model, optimizer, cfg):
    """`model.compile` with the task's own defaults (loss and metrics `"auto"`), the optimizer, XLA
    as configured and, for language models, the configured sampler."""
    kwargs = {"optimizer": optimizer, "jit_compile": resolve_jit_compile(cfg.trainer.jit_compile)}
    if isinstance(model, keras_hub.models.CausalLM):
        kwargs["sampler"] = cfg.trainer.sampler
    model.compile(**kwargs)


def attach_preprocessor(model, data):
    """Gives a task model a preprocessor built from its data (`data.preprocessor_arguments()`: the
    tokenizer, sequence length, ...) and the data's class names, so that `fit` takes the data's raw
    examples and the saved model and its SavedModel export serve raw inputs. A model that already
    has a preprocessor keeps it."""
    if getattr(model, "preprocessor", "absent") is None and hasattr(data, "preprocessor_arguments"):
        cls = getattr(model, "preprocessor_cls", None)
        if cls is None:
            raise ValueError(f"{type(model).__name__} names no `preprocessor_cls`; cannot build a preprocessor for its data.")
        arguments = data.preprocessor_arguments()
        accepted = inspect.signature(cls.__init__).parameters
        model.preprocessor = cls(**{k: v for k, v in arguments.items() if k in accepted})
    if hasattr(model, "class_names") and model.class_names is None and hasattr(data, "class_names"):
        model.class_names = data.class_names
    return model


def backbone_parameter_count(cfg):
    """`{"total", "active"}` of the configured model's backbone from its config, without allocating
    its weights (the backbone class's `parameter_count`); None for a model without a backbone config."""
    node = cfg.model.get("backbone")
    if node is None or "_target_" not in node:
        return None
    cls = hydra.utils.get_class(node["_target_"])
    if not hasattr(cls, "parameter_count"):
        return None
    return cls.parameter_count(**backbone_config(cfg))


def backbone_config(cfg):
    """The backbone's constructor arguments (no `_target_`), as a plain dict."""
    config = OmegaConf.to_container(cfg.model.backbone, resolve=True)
    config.pop("_target_", None)
    return config
