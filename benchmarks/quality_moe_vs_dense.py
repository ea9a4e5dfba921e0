"""Shakespeare: an 8-expert top-2 MoE LM against the equal-active dense LM, same steps and tokens.

    python benchmarks/quality_moe_vs_dense.py [--epochs 10] [--steps-per-epoch 80] [--total-params]

Both runs use the recipes (`shakespeare_moe`, `shakespeare_dense`) with identical trainer and data
settings, so they see the same batches in the same order. Optionally a dense LM with the same
*total* parameters. Prints validation loss, bits per character and wall time per model, then one
JSON line with the relative improvement of the MoE over the equal-active dense model.
"""

import argparse
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_moe.training import train  # noqa: E402
from keras_moe.training.config import compose_config  # noqa: E402


def run(recipe, args, workdir, extra=()):
    overrides = [
        f"recipe={recipe}", f"trainer.epochs={args.epochs}", f"trainer.steps_per_epoch={args.steps_per_epoch}",
        "trainer.verbose=0", "trainer.tensorboard=false", "export.enabled=false", f"seed={args.seed}",
        f"output_dir={workdir}/{recipe}{'_'.join([''] + [e.split('=')[0].split('.')[-1] for e in extra])}",
        *extra,
    ]
    metrics = train(compose_config(overrides))
    return {
        "val_loss": round(metrics["validation"]["loss"], 4),
        "val_bits_per_character": round(metrics["validation_bits_per_character"], 4),
        "train_seconds": metrics["train_seconds"],
        "total_params": metrics["parameters"]["total"],
        "active_params": metrics["parameters"]["active"],
        "expert_load_max": max((max(v) for v in metrics["expert_load"].values()), default=None),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--total-params", action="store_true", help="also train a dense LM with the MoE's total parameters")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        results = {"moe": run("shakespeare_moe", args, workdir), "dense_equal_active": run("shakespeare_dense", args, workdir)}
        print("moe", results["moe"], flush=True)
        print("dense_equal_active", results["dense_equal_active"], flush=True)
        if args.total_params:
            # 8 experts x 128 wide = one SwiGLU FFN 1,024 wide: the same total parameters as the MoE.
            results["dense_equal_total"] = run("shakespeare_dense", args, workdir, ["model.backbone.dense_intermediate_dim=1024"])
            print("dense_equal_total", results["dense_equal_total"], flush=True)
    moe, dense = results["moe"]["val_loss"], results["dense_equal_active"]["val_loss"]
    results["moe_val_loss_below_dense_percent"] = round(100 * (dense - moe) / dense, 2)
    results["settings"] = vars(args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
