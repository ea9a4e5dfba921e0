"""Config -> objects: data, model, optimizer, with errors that name the bad key and value."""

import hydra
import keras
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from keras_moe.cli.strategies import strategy_scope


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
    """Model, optimizer and `compile` inside the strategy scope."""
    with strategy_scope(strategy):
        model = instantiate(cfg.model, "model")
        optimizer = instantiate(cfg.optimizer, "optimizer")
        compile_model(model, optimizer, cfg)
    return model


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
