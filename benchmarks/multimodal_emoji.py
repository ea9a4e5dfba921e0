"""Emoji group from image + name: majority class, single-modality models and the three multimodal forms.

Every model is trained by `keras-moe train`'s own code (`keras_moe.cli.train.train`) from its recipe
in `recipes/multimodal_*.yaml`, on the same stratified split (seed 0), for the same number of epochs
(the single-modality baselines get the budget of the multimodal models). Prints one JSON line: each
validation accuracy, the best single-modality and best multimodal accuracy, their gap in points
(target: >= 3), for the mixture the validation accuracy of each of its experts alone and its gate's
mean and per-example spread of weights, and the wall time. Needs the emoji data (see conf/data/emoji.yaml).

    python benchmarks/multimodal_emoji.py [--epochs N] [--output /tmp/multimodal_emoji]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SINGLE = ("image_only", "text_only", "image_expert", "text_expert")
MULTIMODAL = ("limoe", "modality_experts", "mixture")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's trainer.epochs")
    parser.add_argument("--output", default="/tmp/multimodal_emoji")
    args = parser.parse_args()

    from keras_moe.cli.config import compose_config
    from keras_moe.cli.train import train

    start = time.time()
    result, seconds, gate = {}, {}, {}
    for recipe in SINGLE + MULTIMODAL:
        overrides = [f"recipe=multimodal_{recipe}", f"output_dir={args.output}/{recipe}", "export.enabled=false",
                     "trainer.tensorboard=false", "trainer.checkpoint=false", "trainer.verbose=0"]
        if args.epochs:
            overrides.append(f"trainer.epochs={args.epochs}")
        metrics = train(compose_config(overrides))
        result[recipe] = round(metrics["validation"]["accuracy"], 4)
        seconds[recipe] = metrics["train_seconds"]
        if "gate_weight_spread" in metrics:
            gate[recipe] = {"experts": metrics["gate_experts"], "mean": [round(w, 3) for w in metrics["expert_load"]["gate"]],
                            "std": [round(w, 3) for w in metrics["gate_weight_spread"]["std"]],
                            "expert_accuracy": {k: round(v, 4) for k, v in metrics["expert_accuracy"].items()}}
        result.setdefault("majority", round(metrics["baselines"]["majority"], 4))
        result.setdefault("naive_bayes_names", round(metrics["baselines"]["naive_bayes"], 4))
    best_single = max(result[r] for r in SINGLE)
    best_multimodal = max(result[r] for r in MULTIMODAL)
    print(json.dumps({
        "accuracy": result,
        "best_single_modality": best_single,
        "best_multimodal": best_multimodal,
        "gain_points": round(100 * (best_multimodal - best_single), 1),
        "target_points": 3.0,
        "gate": gate,
        "train_seconds": seconds,
        "wall_seconds": round(time.time() - start, 1),
    }))


if __name__ == "__main__":
    main()
