"""One training run (`keras-moe train`): check the config, claim the run folder, fit (resuming from
the latest backup), report, save, export. A rerun of the same command continues where the last one
stopped: mid-training it resumes exactly, a trained run without its export only exports, a finished
run is left as it is."""

import logging
import math

import keras
from omegaconf import OmegaConf

from keras_moe import analysis
from keras_moe.params import count_params
from keras_moe.training import artifacts
from keras_moe.training.backup import Backup
from keras_moe.training.building import attach_preprocessor, backbone_parameter_count, build_data, build_model, instantiate
from keras_moe.training.checks import check_run_config
from keras_moe.training.errors import BackupError, RunConflict
from keras_moe.training.fitting import RunProgress, fit_run
from keras_moe.training.identity import config_differences
from keras_moe.training.publishing import publish
from keras_moe.training.run_folder import RunFolder
from keras_moe.training.strategies import strategy_scope

log = logging.getLogger("keras_moe")


def train(cfg, extra_callbacks=()):
    """Runs (or continues) the training job described by `cfg`; returns the metrics in `metrics.json`."""
    check_run_config(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    folder = RunFolder(cfg.output_dir)
    with folder.locked():
        folder.claim(config, resume=cfg.trainer.resume)
        metrics = folder.metrics()
        if metrics is None:
            metrics = _train(cfg, config, folder, extra_callbacks)
        else:
            log.info("%s is already trained (%s).%s", cfg.name, folder.path,
                     "" if "saved_model" in metrics else " Exporting it.")
        if cfg.export.enabled and "saved_model" not in metrics and keras.backend.backend() == "tensorflow":
            metrics = publish(folder, cfg, config, metrics)
    return metrics


def _train(cfg, config, folder, extra_callbacks):
    backup = Backup(folder.file("backup")) if cfg.trainer.checkpoint else None
    state = backup.read() if backup is not None else None  # a corrupt backup stops the run before anything is built
    total_steps = int(cfg.trainer.epochs) * int(cfg.trainer.steps_per_epoch)
    if state is not None:
        _check_backup(state, config, total_steps, backup)
    keras.utils.set_random_seed(int(cfg.seed))
    strategy = instantiate(cfg.strategy, "strategy")
    data = build_data(cfg)
    model = build_model(cfg, strategy)
    attach_preprocessor(model, data)
    params = count_params(model)
    log.info("%s: %s parameters, %s active per token; run folder %s", cfg.name, f"{params['total']:,}",
             f"{params['active']:,}", folder.path)
    if state is not None:
        with strategy_scope(strategy):
            model.optimizer.build(model.trainable_variables)
        backup.restore(model, state)
        log.info("%s: resuming at step %d of %d from %s", cfg.name, state["step"], total_steps, state["path"])
    progress = RunProgress(state, int(cfg.trainer.steps_per_epoch), folder.path, backup, cfg.trainer.backup_freq, config,
                           backup.metric_values(state) if state is not None else None, cfg.trainer.get("max_minutes"))
    fit_run(model, data, cfg, progress, _callbacks(cfg, folder) + list(extra_callbacks))
    if progress.stopped_by_budget:
        log.info("%s: trainer.max_minutes=%s spent after %d of %d steps; finishing the run.", cfg.name,
                 cfg.trainer.max_minutes, progress.step, total_steps)

    metrics = _report(model, data, cfg, folder, progress, params)
    folder.save_model(model)
    if metrics["expert_load"]:
        artifacts.plot_expert_load(metrics["expert_load"], folder.file("expert_load.png"),
                                   f"{cfg.name}: expert load per MoE layer")
    folder.write_metrics(metrics)  # from here on the run counts as trained
    if backup is not None:
        backup.delete()
    return metrics


def _check_backup(state, config, total_steps, backup):
    differences = config_differences(state.get("config") or {}, config)
    if differences:
        raise RunConflict(f"The backup {state['path']} was written by a different configuration (backup -> this command):\n  "
                          + "\n  ".join(differences) + f"\n{backup.way_out()}")
    if state["step"] > total_steps:
        raise BackupError(f"The backup {state['path']} is at step {state['step']}, past the end of this run "
                          f"({total_steps} steps). {backup.way_out()}")


def _callbacks(cfg, folder):
    if cfg.trainer.tensorboard:
        return [keras.callbacks.TensorBoard(folder.file("tensorboard"), update_freq="epoch")]
    return []


def _report(model, data, cfg, folder, progress, params):
    """Evaluation, routing figures, samples and baselines of the trained model, as `metrics.json` holds them."""
    evaluation = model.evaluate(data.validation_dataset(), steps=cfg.trainer.validation_steps, verbose=0, return_dict=True)
    validation = data.validation_dataset()
    load = artifacts.expert_load(model, analysis.model_inputs(model, validation) if analysis.is_multimodal(model) else validation)
    routing = analysis.analyse(model, data.validation_dataset(), folder.path, f"{cfg.name}: routing by modality",
                               getattr(data, "class_names", None))
    load = load or routing.pop("expert_load", {})  # a mixture of whole models: its gate's mean weights
    analytic = backbone_parameter_count(cfg)
    metrics = {
        "name": cfg.name,
        "output_dir": folder.path,
        "train_seconds": round(progress.train_seconds, 1),
        "epochs_run": len(progress.history),
        "steps_run": progress.step,
        "stopped_by_time_budget": progress.stopped_by_budget,
        "parameters": params,
        "backbone_parameters_analytic": None if analytic is None else {k: analytic[k] for k in ("total", "active")},
        "history": progress.history_dict(),
        "validation": {k: float(v) for k, v in evaluation.items()},
        "expert_load": load,
        **routing,
    }
    if getattr(data, "task", None) == "causal_lm":
        metrics["validation_bits_per_character"] = float(evaluation["loss"]) / math.log(2.0)
        metrics["samples"] = sample(model, data.prompts, cfg)
    if hasattr(data, "baselines"):
        metrics["baselines"] = data.baselines()
    return metrics


def sample(model, prompts, cfg):
    length = int(cfg.trainer.sample_length)
    outputs = {}
    for prompt in prompts:
        text = model.generate(prompt, max_length=min(len(prompt) + length, int(cfg.data.sequence_length)))
        outputs[prompt] = text
        log.info("sample:\n%s", text)
    return outputs
