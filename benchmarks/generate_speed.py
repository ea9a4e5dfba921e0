"""Decoding speed: the default MoE LM against its equal-active dense LM, `generate` tokens/s.

    python benchmarks/generate_speed.py [--backends tensorflow jax] [--new-tokens 60] [--dispatch auto]

Both models come from the recipes' configs (`model=moe_lm_small`: 8 SwiGLU experts, top-2;
`model=dense_lm_small`: one SwiGLU FFN of width top-2 x 128), untrained (speed does not depend on the
weights), with the same byte preprocessor. Greedy `generate` of `--new-tokens` tokens after a prompt,
at batch 1 and 8; each is warmed up at the same length first (compilation excluded), then timed,
interleaved with the other model, median of `--repeats` (and the best repeat: on a shared
machine other jobs only ever add time, so `moe_over_dense_best` is the steadier ratio). Each backend runs in its own process.
Prints one JSON line last. Targets (issue 13): MoE >= 0.95x dense tokens/s at batch 1, >= 0.9x at batch 8.
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
    models = {}
    for name, model in (("moe", "moe_lm_small"), ("dense", "dense_lm_small")):
        overrides = [f"model={model}", f"data.sequence_length={args.length}"]
        if name == "moe":
            overrides.append(f"model.backbone.dispatch={args.dispatch}")
        lm = instantiate(compose_config(overrides).model, "model")
        lm.compile(sampler="greedy", jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile])
        models[name] = lm
    results = {}
    for batch in args.batches:
        prompts = ["ROMEO.\nWhat light"] * batch
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
    return {"backend": keras.backend.backend(), "dispatch": args.dispatch, "jit_compile": args.jit_compile, "results": results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="*", default=["tensorflow", "jax"])
    parser.add_argument("--new-tokens", type=int, default=60)
    parser.add_argument("--length", type=int, default=128, help="the models' context (prompt + new tokens fit in it)")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--dispatch", default="auto")
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"], help="both models' compile(jit_compile=...)")
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
