"""Emoji group from image + name: majority class, single-modality models and the three multimodal forms.

Every model is trained by `keras-moe train`'s own code (`keras_moe.training.train`) from its recipe
in `recipes/multimodal_*.yaml`, on the same stratified split (seed 0), for the same number of epochs
(the single-modality baselines get the budget of the multimodal models). Prints one JSON line: each
validation accuracy, the best single-modality and best multimodal accuracy, their gap in points
(target: >= 3), for the mixture the validation accuracy of each of its experts alone and its gate's
mean and per-example spread of weights, and the wall time. Needs the emoji data (see conf/data/emoji.yaml).

It also trains the two-tower contrastive model (`ContrastiveDualEncoder`: the image and name experts
as towers, symmetric InfoNCE, CLIP / LIMoE's contrastive objective) on the training (image, name)
pairs and reports image-to-name retrieval on the validation pairs under `"retrieval"`: each
validation image ranks all validation names; recall@1 and recall@5 against chance (k / n).

    python benchmarks/multimodal_emoji.py [--epochs N] [--output /tmp/multimodal_emoji]
    python benchmarks/multimodal_emoji.py --retrieval-only [--retrieval-epochs N]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SINGLE = ("image_only", "text_only", "image_expert", "text_expert")
MULTIMODAL = ("limoe", "modality_experts", "mixture")


def retrieval(epochs=80, batch_size=128, embedding_dim=64, learning_rate=3e-3, seed=0):
    """Trains `ContrastiveDualEncoder` on the emoji training pairs (labels unused); returns recall@1/@5 of
    image-to-name retrieval over the validation pairs, chance levels, and the training time."""
    import keras

    from keras_moe.data.emoji import EmojiClassification
    from keras_moe.models.multimodal import (
        ContrastiveDualEncoder,
        MultimodalClassifierPreprocessor,
        image_tower,
        recall_at_k,
        text_tower,
    )

    keras.utils.set_random_seed(seed)
    task = EmojiClassification(seed=seed)
    preprocessor = MultimodalClassifierPreprocessor(**task.preprocessor_arguments())

    def features(split):
        x = preprocessor({"images": split[0], "names": list(split[1])})
        return {key: keras.ops.convert_to_numpy(value) for key, value in x.items()}

    train_x, validation_x = features(task.train), features(task.validation)
    model = ContrastiveDualEncoder(image_tower(task.image_size), text_tower(task.vocabulary_size, task.sequence_length),
                                   embedding_dim=embedding_dim)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    start = time.time()
    model.fit(train_x, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    train_seconds = round(time.time() - start, 1)
    images = keras.ops.convert_to_numpy(model.encode_images(validation_x["images"]))
    texts = keras.ops.convert_to_numpy(model.encode_texts(validation_x["token_ids"]))
    ks = (1, 5)
    n = len(images)
    result = {key: round(value, 4) for key, value in recall_at_k(images, texts, ks).items()}
    result.update({f"chance@{k}": round(k / n, 4) for k in ks})
    result.update({"name_to_image": {key: round(value, 4) for key, value in recall_at_k(texts, images, ks).items()},
                   "pairs": n, "train_pairs": len(train_x["images"]), "epochs": epochs,
                   "temperature": round(1.0 / float(keras.ops.convert_to_numpy(model.scale())), 4),
                   "train_seconds": train_seconds})
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's trainer.epochs")
    parser.add_argument("--output", default="/tmp/multimodal_emoji")
    parser.add_argument("--retrieval-epochs", type=int, default=80, help="epochs of the contrastive retrieval model")
    parser.add_argument("--retrieval-only", action="store_true", help="only the image-to-name retrieval part")
    args = parser.parse_args()

    if args.retrieval_only:
        start = time.time()
        print(json.dumps({"retrieval": retrieval(args.retrieval_epochs), "wall_seconds": round(time.time() - start, 1)}))
        return

    from keras_moe.training import train
    from keras_moe.training.config import compose_config

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
        "retrieval": retrieval(args.retrieval_epochs),
        "wall_seconds": round(time.time() - start, 1),
    }))


if __name__ == "__main__":
    main()
