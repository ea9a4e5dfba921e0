"""Decoding speed: the default MoE LM against its equal-active dense LM, `generate` tokens/s.

    python benchmarks/generate_speed.py [--backends tensorflow jax] [--new-tokens 60] [--dispatch auto]

Both models come from the recipes' configs (`model=moe_lm_small`: 8 SwiGLU experts, top-2;
`model=dense_lm_small`: one SwiGLU FFN of width top-2 x 128), untrained (speed does not depend on the
weights), with the same byte preprocessor. Greedy `generate` of `--new-tokens` tokens after a prompt,
at batch 1 and 8; each is warmed up at the same length first (compilation excluded), then timed,
interleaved with the other model, median of `--repeats` (and the best repeat: on a shared
machine other jobs only ever add time, so `moe_over_dense_best` is the steadier ratio). Each backend runs in its own process.
`--saved-model` (TensorFlow) times the exported SavedModels' `generate` signature instead (batch
unknown while tracing, as TF Serving runs it), each model exported with a window of prompt +
`--new-tokens`. Prints one JSON line last. Targets (issue 13): MoE >= 0.95x dense tokens/s at batch 1, >= 0.9x at batch 8.
"""

import argparse
import json
import os
import statistics
import time

from per_backend import run_per_backend

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def measure(args):
    import keras

    from keras_moe.training import compose_config, instantiate

    keras.utils.set_random_seed(0)
    prompt = "ROMEO.\nWhat light"
    length = len(prompt.encode()) + args.new_tokens if args.saved_model else args.length
    models = {}
    for name, model in (("moe", "moe_lm_small"), ("dense", "dense_lm_small")):
        overrides = [f"model={model}", f"data.sequence_length={length}"]
        if name == "moe":
            overrides.append(f"model.backbone.dispatch={args.dispatch}")
        lm = instantiate(compose_config(overrides).model, "model")
        lm.compile(sampler="greedy", jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile])
        models[name] = lm
    if args.saved_model:
        import tempfile

        import tensorflow as tf

        from keras_moe.export import write_saved_model

        if keras.backend.backend() != "tensorflow":
            raise ValueError(f"--saved-model needs the TensorFlow backend, not {keras.backend.backend()!r}")
        directory = tempfile.mkdtemp(prefix="generate_speed_")
        signatures = {}
        for name, lm in models.items():
            write_saved_model(lm, os.path.join(directory, name))
            signatures[name] = tf.saved_model.load(os.path.join(directory, name)).signatures["generate"]
    results = {}
    for batch in args.batches:
        prompts = [prompt] * batch
        if args.saved_model:
            fns = {name: (lambda f=f: f(text=tf.constant(prompts))) for name, f in signatures.items()}  # noqa: B023
        else:
            fns = {name: (lambda lm=lm: lm.generate(prompts, max_length=len(prompts[0]) + args.new_tokens)) for name, lm in models.items()}  # noqa: B023 (called within the iteration)
        outputs = {name: fn() for name, fn in fns.items()}  # warm-up at the same length (compiles)
        assert all(len(o) for o in outputs.values())
        samples = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
        rates = {name: round(batch * args.new_tokens / statistics.median(values), 1) for name, values in samples.items()}
        best = {name: round(batch * args.new_tokens / min(values), 1) for name, values in samples.items()}
        results[f"batch_{batch}"] = {
            "tokens_per_s": rates,
            "moe_over_dense": round(rates["moe"] / rates["dense"], 3),
            "best_tokens_per_s": best,  # the least disturbed repeat (other jobs only ever add time)
            "moe_over_dense_best": round(best["moe"] / best["dense"], 3),
        }
    return {"backend": keras.backend.backend(), "dispatch": args.dispatch, "jit_compile": args.jit_compile,
            "saved_model": args.saved_model, "results": results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="*", default=["tensorflow", "jax"])
    parser.add_argument("--new-tokens", type=int, default=60)
    parser.add_argument("--length", type=int, default=128, help="the models' context (prompt + new tokens fit in it)")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--dispatch", default="auto")
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"], help="both models' compile(jit_compile=...)")
    parser.add_argument("--saved-model", action="store_true", help="time the exported SavedModels' generate signature (TensorFlow)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args)))
        return
    figures = {}
    for backend, figures[backend] in run_per_backend(__file__, args.backends):
        print(backend, json.dumps(figures[backend]), flush=True)
    print(json.dumps({"benchmark": "generate_speed", "new_tokens": args.new_tokens, "figures": figures}))


if __name__ == "__main__":
    main()
