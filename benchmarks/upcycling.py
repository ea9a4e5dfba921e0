"""Sparse upcycling on Shakespeare (Komatsuzaki et al. 2022): continue a trained dense LM as it is,
or as its upcycled 8-expert top-2 MoE, for the same further steps on the same batches.

    python benchmarks/upcycling.py [--dense-steps 1500] [--more-steps 1500] [--experts 8]

1. The dense LM of `recipe=shakespeare_dense` trains `--dense-steps` steps.
2. (a) It trains `--more-steps` more steps; (b) `keras_moe.hub.upcycle` turns it into an MoE LM whose
   every expert is a copy of its FFN (outputs equal at the start: checked), which trains the same
   `--more-steps` steps. Both continue from the same batches (the data pipeline skips the first
   `--dense-steps` batches), with fresh optimizers of the recipe's kind and a constant learning rate
   (`--learning-rate`), so only the model differs.
Prints each model's validation loss (and bits per character) and wall time, then one JSON line.
Target (issue 10): (b) below (a), as the paper reports.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_moe.hub as hub  # noqa: E402
from keras_moe.training import build_data, build_model, compose_config  # noqa: E402


def optimizer(learning_rate):
    return keras.optimizers.AdamW(learning_rate, weight_decay=0.01, clipnorm=1.0)


def fit(model, dataset, steps, validation, learning_rate, jit_compile=False):
    model.compile(optimizer=optimizer(learning_rate), sampler="greedy", jit_compile=jit_compile)
    start = time.time()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    seconds = time.time() - start
    loss = float(model.evaluate(validation, verbose=0, return_dict=True)["loss"])
    return {"val_loss": round(loss, 4), "val_bits_per_character": round(loss / np.log(2.0), 4),
            "train_seconds": round(seconds, 1), "seconds_per_step": round(seconds / steps, 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dense-steps", type=int, default=1500)
    parser.add_argument("--more-steps", type=int, default=1500)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="constant rate of the continued training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    cfg = compose_config(["recipe=shakespeare_dense", f"seed={args.seed}", "trainer.epochs=1",
                          f"trainer.steps_per_epoch={args.dense_steps}"])
    data = build_data(cfg)
    dense = build_model(cfg)
    validation = data.validation_dataset()  # raw text: the tasks' preprocessor maps it (keras-hub Task.fit)
    train = data.train_dataset()
    start = time.time()
    dense.fit(train, epochs=1, steps_per_epoch=args.dense_steps, verbose=0)
    stage_one = {"steps": args.dense_steps, "train_seconds": round(time.time() - start, 1),
                 "val_loss": round(float(dense.evaluate(validation, verbose=0, return_dict=True)["loss"]), 4)}
    print("dense, first stage:", stage_one, flush=True)

    moe = hub.upcycle(dense, num_experts=args.experts, top_k=args.top_k, seed=args.seed)
    batch = dense.preprocessor(next(iter(validation)))[0]
    start_difference = float(np.abs(keras.ops.convert_to_numpy(moe(batch)) - keras.ops.convert_to_numpy(dense(batch))).max())
    rest = train.skip(args.dense_steps)  # the same batches for both continuations
    upcycled = fit(moe, rest, args.more_steps, validation, args.learning_rate)
    print("upcycled MoE:", upcycled, flush=True)
    continued = fit(dense, rest, args.more_steps, validation, args.learning_rate)
    print("dense, continued:", continued, flush=True)
    gain = (continued["val_loss"] - upcycled["val_loss"]) / continued["val_loss"]
    print(json.dumps({
        "benchmark": "upcycling", "backend": keras.backend.backend(), "dense_steps": args.dense_steps,
        "more_steps": args.more_steps, "experts": args.experts, "top_k": args.top_k, "learning_rate": args.learning_rate,
        "dense_first_stage": stage_one, "upcycled_start_max_logit_difference": start_difference,
        "dense_continued": continued, "upcycled": upcycled, "upcycled_relative_val_loss_gain": round(gain, 4),
        "parameters": {"dense": dense.count_params(), "upcycled": moe.count_params()},
    }))


if __name__ == "__main__":
    main()
