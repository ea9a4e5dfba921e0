"""The `keras-moe` command.

    keras-moe train [recipe=NAME] [key=value ...]        # Hydra overrides; -m for sweeps
    keras-moe evaluate [recipe=NAME] [key=value ...]     # the run that `train` with the same overrides wrote
    keras-moe generate "prompt" [recipe=NAME] [key=value ...]
    keras-moe export [recipe=NAME] [key=value ...]       # the next SavedModel version of that run
    keras-moe serve saved_models/NAME [--host 127.0.0.1] [--port 8501] [--grpc-port 8500]
    keras-moe params [model=NAME] [key=value ...]
    keras-moe upcycle SOURCE OUTPUT.keras [--num-experts 8] [--top-k 2] [--expert-noise 0] [--seed 0]
    keras-moe launch --workers N -- train [key=value ...]   # multi-worker training on this host

A run's name comes from its recipe and the overrides that change what it trains (docs/runs.md), so
the same overrides find the same run folder, `outputs/<name>/`. `KERAS_MOE_CONFIG_DIR=<dir>` adds your
own configs (`<dir>/recipes/<name>.yaml` for `recipe=<name>`).
"""

import json
import logging
import os
import sys


def _quiet_python_logs():
    """TensorFlow's Python INFO lines (`Assets written to ...`), JAX's (`Unable to initialize backend
    'tpu'`) and absl warnings stay out of the output."""
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("jax").setLevel(logging.WARNING)


def _config(argv):
    from keras_moe.training.checks import check_run_config
    from keras_moe.training.config import compose_config

    cfg = compose_config(argv)
    check_run_config(cfg)
    return cfg


def _trained_run(cfg):
    from keras_moe.training.run_folder import RunFolder

    folder = RunFolder(cfg.output_dir)
    if not os.path.isfile(folder.file("model.keras")):
        raise SystemExit(f"No trained model at {folder.file('model.keras')}: run `keras-moe train` with the same "
                         f"recipe and overrides first (run name {cfg.name!r}).")
    return folder


def summary(metrics):
    keys = ("name", "output_dir", "train_seconds", "parameters", "validation", "saved_model")
    return {key: metrics[key] for key in keys if key in metrics}


def cmd_train(argv):
    """Hydra's own entry point, so that -m sweeps, --cfg, --help and output folders work as usual."""
    import hydra

    from keras_moe.training.config import primary_config_path, searchpath_override, translate_overrides

    @hydra.main(config_path=primary_config_path(), config_name="config", version_base="1.3")
    def run(cfg):
        from keras_moe.training import BackupError, ConfigError, train

        _quiet_python_logs()
        try:
            metrics = train(cfg)
        except (ConfigError, BackupError) as error:
            raise SystemExit(f"keras-moe train: {error}") from None
        print(json.dumps(summary(metrics)), flush=True)

    args = translate_overrides(argv)
    # Hydra's parser takes the overrides as one run of positional arguments: join that run (or end the line).
    first = next((i for i, arg in enumerate(args) if "=" in arg and not arg.startswith("-")), len(args))
    sys.argv = ["keras-moe train", *args[:first], searchpath_override(), *args[first:]]
    run()


def cmd_evaluate(argv):
    from keras_moe.training import build_data, build_optimizer, compile_model

    cfg = _config(argv)
    model = _trained_run(cfg).load_model()
    compile_model(model, build_optimizer(cfg), cfg)
    result = model.evaluate(build_data(cfg).validation_dataset(), steps=cfg.trainer.validation_steps, verbose=0, return_dict=True)
    print(json.dumps({k: float(v) for k, v in result.items()}))


def cmd_generate(argv):
    if not argv or "=" in argv[0]:
        raise SystemExit('usage: keras-moe generate "prompt" [recipe=NAME] [key=value ...]')
    prompt, overrides = argv[0], argv[1:]
    cfg = _config(overrides)
    model = _trained_run(cfg).load_model()
    if not hasattr(model, "generate"):
        raise SystemExit(f"`keras-moe generate` needs a language model; the run {cfg.name!r} holds a {type(model).__name__}.")
    model.compile(sampler=cfg.trainer.sampler)
    print(model.generate(prompt, max_length=min(len(prompt) + int(cfg.trainer.sample_length), int(cfg.data.sequence_length))))


def cmd_export(argv):
    from keras_moe.export import export_saved_model
    from keras_moe.training.run_folder import CONFIG_ASSET, config_yaml

    cfg = _config(argv)
    folder = _trained_run(cfg)
    saved = folder.saved_config()  # the config that trained the model travels with it
    assets = None if saved is None else {CONFIG_ASSET: config_yaml(saved)}
    print(export_saved_model(folder.load_model(), cfg.export.root, cfg.name, assets=assets))


def cmd_serve(argv):
    from keras_moe.serving.server import main as serve

    serve(argv)


def cmd_params(argv):
    from keras_moe.training import backbone_parameter_count, compose_config

    counts = backbone_parameter_count(compose_config(argv))
    if counts is None:
        raise SystemExit("`keras-moe params` counts models with a backbone config (model.backbone); this model has none.")
    print(json.dumps({"total": counts["total"], "active": counts["active"],
                      "total_billions": round(counts["total"] / 1e9, 3), "active_billions": round(counts["active"] / 1e9, 3)}))


def cmd_upcycle(argv):
    """A dense model (run folder, `.keras` file or keras-hub preset directory) -> an upcycled MoE `.keras` file."""
    import argparse

    parser = argparse.ArgumentParser(prog="keras-moe upcycle", description=cmd_upcycle.__doc__)
    parser.add_argument("source", help="a keras-moe run folder (outputs/<name>), a .keras file or a keras-hub preset directory")
    parser.add_argument("output", help="where to write the MoE model (.keras)")
    parser.add_argument("--num-experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--expert-noise", type=float, default=0.0, help="Drop-Upcycling: share of FFN units re-initialised")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.output.endswith(".keras"):
        raise SystemExit(f"keras-moe upcycle: the output must be a .keras file, got {args.output!r}.")
    from keras_moe.hub import upcycle_from
    from keras_moe.params import count_params
    from keras_moe.training.atomic import replacing

    try:
        model = upcycle_from(args.source, args.num_experts, top_k=args.top_k, expert_noise=args.expert_noise, seed=args.seed)
    except ValueError as error:
        raise SystemExit(f"keras-moe upcycle: {error}") from None
    with replacing(os.path.abspath(args.output)) as temporary:
        model.save(temporary)
    print(json.dumps({"output": os.path.abspath(args.output), "model": type(model).__name__,
                      "parameters": count_params(model)}))


def cmd_launch(argv):
    from keras_moe.cli.launch import main as launch

    raise SystemExit(launch(argv))


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "generate": cmd_generate, "export": cmd_export,
            "serve": cmd_serve, "params": cmd_params, "upcycle": cmd_upcycle,
            "launch": cmd_launch}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["train"]
    command, rest = argv[0], argv[1:]
    if command in ("-h", "--help"):
        print(__doc__)
        return
    if command not in COMMANDS:
        raise SystemExit(f"Unknown command {command!r}. Commands: {', '.join(COMMANDS)}")
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from keras_moe.training import BackupError, ConfigError

    _quiet_python_logs()
    try:
        COMMANDS[command](rest)
    except (ConfigError, BackupError, HydraException, OmegaConfBaseException) as error:
        raise SystemExit(f"keras-moe {command}: {error}") from None


if __name__ == "__main__":
    main()
