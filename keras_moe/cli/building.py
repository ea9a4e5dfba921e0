"""Config -> objects: data, model, optimizer, with errors that name the bad key and value."""

import hydra
import keras
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from keras_moe.cli.strategies import check_batch_size, strategy_scope


class ConfigError(ValueError):
    """A config that cannot be instantiated; the message names the group, key and value."""


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


def compile_model(model, optimizer, cfg):
    from keras_moe.models import MoECausalLM

    jit_compile = bool(cfg.trainer.jit_compile)
    if isinstance(model, MoECausalLM):
        model.compile(optimizer=optimizer, sampler=cfg.trainer.sampler, jit_compile=jit_compile)
    else:
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=jit_compile,
        )


def backbone_config(cfg):
    """The backbone's constructor arguments (no `_target_`), as a plain dict."""
    config = OmegaConf.to_container(cfg.model.backbone, resolve=True)
    config.pop("_target_", None)
    return config
