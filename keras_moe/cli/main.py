"""The `keras-moe` command: train, evaluate, generate, params, export.

    keras-moe train [recipe=NAME] [key=value ...]        # Hydra overrides; -m for sweeps
    keras-moe evaluate [recipe=NAME] [key=value ...]
    keras-moe generate "prompt" [recipe=NAME] [key=value ...]
    keras-moe params [model=NAME] [key=value ...]
    keras-moe export [recipe=NAME] [key=value ...]
    keras-moe serve saved_models/NAME [--host 127.0.0.1] [--port 8501] [--grpc-port 8500]
    keras-moe launch --workers N -- train [key=value ...]   # multi-worker training on this host
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

COMMANDS = ("train", "evaluate", "generate", "params", "export", "serve", "launch")


def _trained_model(cfg):
    import keras

    import keras_moe  # noqa: F401 (registers the classes that the .keras file names)

    path = os.path.join(cfg.output_dir, "model.keras")
    if not os.path.isfile(path):
        raise SystemExit(f"No trained model at {path}: run `keras-moe train` with the same recipe first.")
    return keras.models.load_model(path)


def cmd_train(argv):
    """Hydra's own entry point, so that -m sweeps, output folders and --help work as usual."""
    import hydra

    from keras_moe.training.config import project_root, searchpath_override, translate_overrides

    @hydra.main(config_path=str(project_root() / "conf"), config_name="config", version_base="1.3")
    def run(cfg):
        from keras_moe.training import train

        metrics = train(cfg)
        print(json.dumps({k: metrics[k] for k in ("name", "train_seconds", "parameters", "validation")}))

    sys.argv = ["keras-moe train"] + translate_overrides(argv) + [searchpath_override()]
    run()


def cmd_evaluate(argv):
    from keras_moe.training import build_data, build_optimizer, compile_model, compose_config

    cfg = compose_config(argv)
    model = _trained_model(cfg)
    compile_model(model, build_optimizer(cfg), cfg)
    result = model.evaluate(build_data(cfg).validation_dataset(), verbose=0, return_dict=True)
    print(json.dumps({k: float(v) for k, v in result.items()}))


def cmd_generate(argv):
    from keras_moe.training import compose_config

    if not argv or "=" in argv[0]:
        raise SystemExit('usage: keras-moe generate "prompt" [recipe=NAME] [key=value ...]')
    prompt, overrides = argv[0], argv[1:]
    cfg = compose_config(overrides)
    model = _trained_model(cfg)
    model.compile(sampler=cfg.trainer.sampler)
    print(model.generate(prompt, max_length=min(len(prompt) + int(cfg.trainer.sample_length), int(cfg.data.sequence_length))))


def cmd_params(argv):
    from keras_moe.training import backbone_parameter_count, compose_config

    counts = backbone_parameter_count(compose_config(argv))
    if counts is None:
        raise SystemExit("`keras-moe params` counts models with a backbone config (model.backbone); this model has none.")
    print(json.dumps({"total": counts["total"], "active": counts["active"],
                      "total_billions": round(counts["total"] / 1e9, 3), "active_billions": round(counts["active"] / 1e9, 3)}))


def cmd_export(argv):
    from keras_moe.export import export_saved_model
    from keras_moe.training import compose_config

    cfg = compose_config(argv)
    print(export_saved_model(_trained_model(cfg), cfg.export.root, cfg.name))


def cmd_serve(argv):
    from keras_moe.serving.server import main as serve

    serve(argv)


def cmd_launch(argv):
    from keras_moe.cli.launch import main as launch

    raise SystemExit(launch(argv))


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
    globals()[f"cmd_{command}"](rest)


if __name__ == "__main__":
    main()
