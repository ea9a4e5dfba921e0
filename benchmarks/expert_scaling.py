"""Expert scaling at equal compute on Shakespeare: the equal-active dense LM against MoE LMs with more and
more experts (same top-k, same expert width, so the same active parameters per token), plus the dense
model upcycled half way (Komatsuzaki et al. 2022). Switch Transformer (Fedus et al. 2021) reports the
gain growing with the number of experts; this measures whether it does at this size.

    python benchmarks/expert_scaling.py [--experts 8 16 32 64] [--steps 2000] [--eval-every 100]
    python benchmarks/expert_scaling.py --smoke        # a 2-minute check that everything runs

Every model is `recipe=shakespeare_moe` (hidden 128, expert FFN 128 wide, top-2; `dispatch: auto`) with
`num_experts` changed, or `recipe=shakespeare_dense` (one SwiGLU FFN 256 wide: the same active
parameters), both at `--layers 2` and `--batch-size 16` (the recipes have 4 and 32): the size that fits
the benchmark in under 60 minutes on 2 CPU cores without AVX-512 (0.11 s a dense step, 0.16 at 64
experts). All see the same batches in the same order, for the same steps, with the recipe's AdamW and
warm-up + cosine schedule. The peak learning rate is tuned once per family (dense; MoE at 16 experts)
on a short run (`--tune-steps`, candidates `--learning-rates`) and then used for every model of that
family. The upcycled model starts from the dense run's weights at step `steps / 2` (every expert a copy
of its FFN; top-1 by default, so the same active parameters), and trains the other half with a fresh
optimizer and schedule on reshuffled batches.

Reports per model: validation loss (nats per byte) and bits per character at every `--eval-every` steps,
total and active parameters, wall time per training step (validation excluded), the largest expert share
(router collapse check), and the step speed-up to quality: the steps each model needs to reach the dense
model's final validation loss (linear interpolation between evaluations) against the dense model's steps.
Writes a PNG (validation loss against step; final loss against the number of experts) and prints one JSON
line last.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from keras_moe.training import train  # noqa: E402
from keras_moe.training.config import compose_config  # noqa: E402


class StepTimer(keras.callbacks.Callback):
    """Wall time of the training steps only: each epoch from its start to its last step (validation
    excluded), leaving out the run's first step (tracing and compiling)."""

    def __init__(self):
        super().__init__()
        self.seconds, self.steps, self.first = 0.0, 0, True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.last_step_end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last_step_end = time.perf_counter()
        if self.first:
            self.first, self.epoch_start = False, self.last_step_end
            return
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += self.last_step_end - self.epoch_start


class SaveAt(keras.callbacks.Callback):
    """Saves the model as `.keras` at the end of epoch `epoch` (1-based): the upcycling source."""

    def __init__(self, epoch, path):
        super().__init__()
        self.epoch, self.path = epoch, path

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            self.model.save(self.path)


def steps_to_reach(steps, losses, target):
    """First step at which the curve `(steps, losses)` reaches `target`, linearly interpolated between
    evaluations (the curve starts at step 0 above every loss of interest); None if it never does."""
    previous_step, previous_loss = None, None
    for step, loss in zip(steps, losses, strict=True):
        if loss <= target:
            if previous_step is None:
                return float(step)
            return previous_step + (step - previous_step) * (previous_loss - target) / (previous_loss - loss)
        previous_step, previous_loss = step, loss
    return None


def run(name, overrides, args, workdir, callbacks=()):
    timer = StepTimer()
    cfg = compose_config([
        f"trainer.epochs={args.steps // args.eval_every}", f"trainer.steps_per_epoch={args.eval_every}",
        "trainer.verbose=0", "trainer.tensorboard=false", "trainer.checkpoint=false", "trainer.sample_length=0",
        f"data.max_validation_windows={args.validation_windows}", "export.enabled=false", f"seed={args.seed}",
        f"output_root={workdir}", f"name={name}", f"data.batch_size={args.batch_size}", *overrides,
    ])
    start = time.time()
    metrics = train(cfg, extra_callbacks=[timer, *callbacks])
    losses = [round(v, 4) for v in metrics["history"]["val_loss"]]
    load = metrics.get("expert_load") or {}
    result = {
        "val_loss_curve": losses,
        "val_loss": losses[-1],
        "val_bits_per_character": round(losses[-1] / math.log(2.0), 4),
        "total_params": metrics["parameters"]["total"],
        "active_params": metrics["parameters"]["active"],
        "seconds_per_step": round(timer.seconds / max(timer.steps, 1), 4),
        "wall_seconds": round(time.time() - start, 1),
        "expert_load_max": round(max((max(v) for v in load.values()), default=0.0), 4) or None,
        "learning_rate": float(cfg.optimizer.learning_rate.warmup_target),
    }
    print(name, {k: v for k, v in result.items() if k != "val_loss_curve"}, flush=True)
    return result


def moe_overrides(experts, learning_rate, args):
    return ["recipe=shakespeare_moe", f"model.backbone.num_layers={args.layers}", f"model.backbone.num_experts={experts}",
            f"model.backbone.router.config.top_k={args.top_k}", f"optimizer.learning_rate.warmup_target={learning_rate}"]


def dense_overrides(learning_rate, args):
    return ["recipe=shakespeare_dense", f"model.backbone.num_layers={args.layers}",
            f"model.backbone.dense_intermediate_dim={args.top_k * 128}", f"optimizer.learning_rate.warmup_target={learning_rate}"]


def tune(family, make_overrides, args, workdir):
    """The peak learning rate with the lowest validation loss after `--tune-steps` steps."""
    short = argparse.Namespace(**{**vars(args), "steps": args.tune_steps, "eval_every": args.tune_steps})
    losses = {rate: run(f"tune_{family}_{rate}", make_overrides(rate), short, workdir)["val_loss"] for rate in args.learning_rates}
    print(f"tuned {family}: {losses}", flush=True)
    return min(losses, key=losses.get), losses


def plot(results, steps, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, final) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, result in results.items():
        offset = result.get("start_step", 0)
        xs = [offset + s for s in steps[: len(result["val_loss_curve"])]]
        curves.plot(xs, result["val_loss_curve"], marker=".", label=name, linestyle="--" if name == "upcycled" else "-")
    curves.set(xlabel="training step", ylabel="validation loss (nats/byte)", title="Validation loss against step")
    tail = [v for r in results.values() for v in r["val_loss_curve"][len(r["val_loss_curve"]) // 3:]]
    curves.set_ylim(min(tail) - 0.02, max(tail) + 0.05)
    curves.grid(alpha=0.3)
    curves.legend()
    experts = sorted((int(n.split("_")[1]), r["val_loss"]) for n, r in results.items() if n.startswith("moe_"))
    final.plot([e for e, _ in experts], [v for _, v in experts], marker="o", label="MoE, top-2")
    final.axhline(results["dense"]["val_loss"], color="gray", linestyle=":", label="dense, equal active")
    if "upcycled" in results:
        final.axhline(results["upcycled"]["val_loss"], color="tab:purple", linestyle="--", label="dense, upcycled half way")
    final.set_xscale("log", base=2)
    final.set(xlabel="number of experts", ylabel="final validation loss", title=f"Final loss after {steps[-1]} steps")
    final.grid(alpha=0.3)
    final.legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experts", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks (the recipe has 4)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences of 128 bytes per step (the recipe has 32)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--validation-windows", type=int, default=256, help="validation windows of 128 bytes per evaluation")
    parser.add_argument("--tune-steps", type=int, default=300)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[3e-3, 6e-3, 1.2e-2])
    parser.add_argument("--dense-learning-rate", type=float, help="skip tuning the dense family")
    parser.add_argument("--moe-learning-rate", type=float, help="skip tuning the MoE family")
    parser.add_argument("--upcycle-experts", type=int, default=8, help="0: no upcycled model")
    parser.add_argument("--upcycle-top-k", type=int, default=1,
                        help="experts per token of the upcycled model (each expert is the whole dense FFN: 1 keeps the active parameters)")
    parser.add_argument("--plot", default="benchmarks/expert_scaling.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny settings: checks that everything runs")
    args = parser.parse_args()
    if args.smoke:
        args.experts, args.steps, args.eval_every, args.tune_steps, args.validation_windows = [4, 8], 40, 10, 10, 32
        args.learning_rates = [3e-3, 6e-3]
        args.plot = os.path.join(tempfile.gettempdir(), "expert_scaling_smoke.png")
    if args.steps % args.eval_every or (args.upcycle_experts and (args.steps // args.eval_every) % 2):
        sys.exit(f"--steps {args.steps} must be an even number of --eval-every {args.eval_every} intervals")

    started = time.time()
    steps = list(range(args.eval_every, args.steps + 1, args.eval_every))
    with tempfile.TemporaryDirectory() as workdir:
        tuning = {}
        dense_rate, moe_rate = args.dense_learning_rate, args.moe_learning_rate
        if dense_rate is None:
            dense_rate, tuning["dense"] = tune("dense", lambda r: dense_overrides(r, args), args, workdir)
        if moe_rate is None:
            tune_experts = 16 if 16 in args.experts else args.experts[0]
            moe_rate, tuning[f"moe_{tune_experts}"] = tune("moe", lambda r: moe_overrides(tune_experts, r, args), args, workdir)

        source = os.path.join(workdir, "dense_half_way.keras")
        half = SaveAt(len(steps) // 2, source)
        results = {"dense": run("dense", dense_overrides(dense_rate, args), args, workdir, [half] if args.upcycle_experts else [])}
        for experts in args.experts:
            results[f"moe_{experts}"] = run(f"moe_{experts}", moe_overrides(experts, moe_rate, args), args, workdir)
        if args.upcycle_experts:
            upcycled = argparse.Namespace(**{**vars(args), "steps": args.steps // 2})
            results["upcycled"] = run("upcycled", [
                "recipe=shakespeare_upcycled", f"model.source={source}", f"model.num_experts={args.upcycle_experts}",
                f"model.top_k={args.upcycle_top_k}", f"optimizer.learning_rate.warmup_target={moe_rate}", f"data.seed={args.seed + 1}",
            ], upcycled, workdir)
            results["upcycled"]["start_step"] = args.steps // 2

    dense = results["dense"]
    target = dense["val_loss"]
    for result in results.values():
        offset = result.get("start_step", 0)
        reached = steps_to_reach([offset + s for s in steps], result["val_loss_curve"], target)
        result["steps_to_dense_final_loss"] = None if reached is None else round(reached, 1)
        result["step_ratio_to_dense_quality"] = None if reached is None else round(reached / args.steps, 3)
        # time to quality: the steps needed at this model's time per step (the upcycled model also pays for the
        # dense steps before it), against the dense model's whole run
        result["time_ratio_to_dense_quality"] = (None if reached is None else round(
            (offset * dense["seconds_per_step"] + (reached - offset) * result["seconds_per_step"])
            / (args.steps * dense["seconds_per_step"]), 3))
        result["val_loss_below_dense_percent"] = round(100 * (target - result["val_loss"]) / target, 2)
    plot(results, steps, args.plot)

    moe = {n: r for n, r in results.items() if n.startswith("moe_")}
    finals = [moe[f"moe_{e}"]["val_loss"] for e in sorted(args.experts)]
    best = min(moe, key=lambda n: moe[n]["val_loss"])
    summary = {
        "benchmark": "expert_scaling", "backend": keras.backend.backend(), "steps": args.steps, "eval_every": args.eval_every,
        "top_k": args.top_k, "learning_rates": {"dense": dense_rate, "moe": moe_rate, "tuning": tuning, "tune_steps": args.tune_steps},
        "eval_steps": steps, "models": results, "plot": args.plot,
        "targets": {
            "loss_falls_with_experts": all(b < a for a, b in zip(finals, finals[1:])),
            "best_moe": best,
            "best_moe_step_ratio": moe[best]["step_ratio_to_dense_quality"], "step_ratio_target": 0.5,
            "best_moe_time_ratio": moe[best]["time_ratio_to_dense_quality"], "time_ratio_target": 0.7,
            "best_moe_below_dense_percent": moe[best]["val_loss_below_dense_percent"], "below_dense_target_percent": 3.0,
        },
        "minutes": round((time.time() - started) / 60, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
