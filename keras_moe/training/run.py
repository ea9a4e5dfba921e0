"""One training run (`keras-moe train`): strategy, data, model, `model.fit`, then metrics, plots, a
sample and an export."""

import logging
import os
import time

import keras
from omegaconf import OmegaConf

from keras_moe import analysis
from keras_moe.export import export_saved_model
from keras_moe.params import count_params
from keras_moe.training import artifacts
from keras_moe.training.building import attach_preprocessor, backbone_parameter_count, build_data, build_model, instantiate

log = logging.getLogger("keras_moe")


def callbacks(cfg, output_dir):
    result = []
    if cfg.trainer.checkpoint:
        # A rerun of the same command resumes from here (BackupAndRestore); deleted when fit completes.
        result.append(keras.callbacks.BackupAndRestore(
            os.path.join(output_dir, "backup"), save_freq=cfg.trainer.backup_freq, delete_checkpoint=True
        ))
        result.append(keras.callbacks.ModelCheckpoint(os.path.join(output_dir, "best.weights.h5"), save_weights_only=True,
                                                      monitor="val_loss", save_best_only=True))
    if cfg.trainer.tensorboard:
        result.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard"), update_freq="epoch"))
    result.append(keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True))
    return result


def train(cfg, extra_callbacks=()):
    """Runs one training job described by `cfg`; returns the metrics dict written to `metrics.json`."""
    output_dir = cfg.output_dir
    os.makedirs(output_dir, exist_ok=True)
    keras.utils.set_random_seed(int(cfg.seed))
    strategy = instantiate(cfg.strategy, "strategy")
    data = build_data(cfg)
    model = build_model(cfg, strategy)
    attach_preprocessor(model, data)
    params = count_params(model)
    analytic = backbone_parameter_count(cfg)
    log.info("%s: %s parameters, %s active per token", cfg.name, f"{params['total']:,}", f"{params['active']:,}")

    start = time.time()
    history = model.fit(
        data.train_dataset(),
        epochs=int(cfg.trainer.epochs),
        steps_per_epoch=int(cfg.trainer.steps_per_epoch),
        validation_data=data.validation_dataset(),
        validation_steps=cfg.trainer.validation_steps,
        callbacks=callbacks(cfg, output_dir) + list(extra_callbacks),
        verbose=int(cfg.trainer.verbose),
    )
    train_seconds = time.time() - start
    evaluation = model.evaluate(data.validation_dataset(), steps=cfg.trainer.validation_steps, verbose=0, return_dict=True)
    validation = data.validation_dataset()
    load = artifacts.expert_load(model, analysis.model_inputs(model, validation) if analysis.is_multimodal(model) else validation)
    routing = analysis.analyse(model, data.validation_dataset(), output_dir, f"{cfg.name}: routing by modality",
                               getattr(data, "class_names", None))
    load = load or routing.pop("expert_load", {})  # a mixture of whole models: its gate's mean weights

    metrics = {
        "name": cfg.name,
        "train_seconds": round(train_seconds, 1),
        "epochs_run": len(history.history.get("loss", [])),
        "parameters": params,
        "backbone_parameters_analytic": None if analytic is None else {k: analytic[k] for k in ("total", "active")},
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "validation": {k: float(v) for k, v in evaluation.items()},
        "expert_load": load,
        **routing,
    }
    if getattr(data, "task", None) == "causal_lm":
        metrics["validation_bits_per_character"] = float(evaluation["loss"]) / float(keras.ops.log(2.0))
        metrics["samples"] = sample(model, data.prompts, cfg)
    if hasattr(data, "baselines"):
        metrics["baselines"] = data.baselines()
    model.save(os.path.join(output_dir, "model.keras"))
    if load:
        artifacts.plot_expert_load(load, os.path.join(output_dir, "expert_load.png"), f"{cfg.name}: expert load per MoE layer")
    if cfg.export.enabled and keras.backend.backend() == "tensorflow":
        metrics["saved_model"] = export_saved_model(model, cfg.export.root, cfg.name)
    artifacts.write_json_atomic(os.path.join(output_dir, "metrics.json"), metrics)
    OmegaConf.save(cfg, os.path.join(output_dir, "config.yaml"))
    return metrics


def sample(model, prompts, cfg):
    length = int(cfg.trainer.sample_length)
    outputs = {}
    for prompt in prompts:
        text = model.generate(prompt, max_length=min(len(prompt) + length, int(cfg.data.sequence_length)))
        outputs[prompt] = text
        log.info("sample:\n%s", text)
    return outputs
