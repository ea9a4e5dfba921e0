"""keras-hub's MoE models against the same models sparsified by keras_moe.hub, side by side in one run.

    KERAS_BACKEND=tensorflow python benchmarks/keras_hub_speedup.py [--tokens 2048] [--threads 1]

For three shapes scaled to two CPU cores (hidden 256, 4 layers): Mixtral-like (8 experts, top-2),
Qwen3-MoE-like (128 fine-grained experts of width 64, top-8) and GPT-OSS-like (32 experts, top-4).
Times, median of `--repeats` interleaved rounds after a warm-up, `tf.function` without XLA:
- `block`: one MoE block alone on `--tokens` tokens (forward);
- `prefill`: the whole backbone on `--tokens` tokens (batch 4);
- `generate`: greedy `generate` at batch 1, `--new-tokens` tokens after a 16-token prompt, tokens/s.
Outputs are checked equal (max difference printed). Prints one JSON line last.
Targets (issue 10): block speed-up >= 0.6 x (experts / top-k); Qwen3-like prefill >= 3x; generate not slower.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import keras_moe.hub as hub  # noqa: E402

HIDDEN, LAYERS = 256, 4
SHAPES = {
    "mixtral_like": (keras_hub.models.MixtralBackbone, keras_hub.models.MixtralCausalLM,
                     dict(num_query_heads=8, num_key_value_heads=2, intermediate_dim=512, num_experts=8, top_k=2,
                          sliding_window=4096), 8 / 2),
    "qwen3_moe_like": (keras_hub.models.Qwen3MoeBackbone, keras_hub.models.Qwen3MoeCausalLM,
                       dict(num_query_heads=8, num_key_value_heads=2, head_dim=32, intermediate_dim=512, moe_intermediate_dim=64,
                            num_experts=128, top_k=8), 128 / 8),
    "gpt_oss_like": (keras_hub.models.GptOssBackbone, keras_hub.models.GptOssCausalLM,
                     dict(num_query_heads=8, num_key_value_heads=2, head_dim=32, intermediate_dim=256, num_experts=32, top_k=4,
                          sliding_window=4096), 32 / 4),
}
BLOCKS = {"mixtral_like": "_sparse_moe_block", "qwen3_moe_like": "mlp", "gpt_oss_like": "sparse_moe_block"}


def timed(fn, repeats):
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def interleaved(fns, repeats):
    """`{name: median seconds}`, the functions timed in turns (round robin) so load changes hit all alike."""
    for fn in fns.values():
        fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def models(shape):
    backbone_cls, lm_cls, config, _ = SHAPES[shape]
    keras.utils.set_random_seed(0)
    dense = backbone_cls(vocabulary_size=512, num_layers=LAYERS, hidden_dim=HIDDEN, dtype="float32", **config)
    sparse = backbone_cls.from_config(dense.get_config())
    sparse.set_weights(dense.get_weights())
    hub.sparsify(sparse)
    return dense, sparse, lm_cls(backbone=dense, preprocessor=None), lm_cls(backbone=sparse, preprocessor=None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra/inter-op threads (1: stable figures)")
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES))
    args = parser.parse_args()
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    results = {}
    for shape in args.shapes:
        dense, sparse, dense_lm, sparse_lm = models(shape)
        ratio = SHAPES[shape][3]
        x = tf.constant(np.random.default_rng(0).normal(size=(4, args.tokens // 4, HIDDEN)).astype("float32"))
        blocks = {name: getattr(model.transformer_layers[0], BLOCKS[shape]) for name, model in (("keras_hub", dense), ("sparse", sparse))}
        block_fns = {name: tf.function(lambda x, b=b: b(x)[0]) for name, b in blocks.items()}
        difference = float(np.abs(block_fns["keras_hub"](x).numpy() - block_fns["sparse"](x).numpy()).max())
        block = interleaved({name: (lambda f=f: f(x).numpy()) for name, f in block_fns.items()}, args.repeats)  # noqa: B023 (called within the iteration)

        ids = np.random.default_rng(1).integers(1, 512, (4, args.tokens // 4)).astype("int32")
        inputs = {"token_ids": tf.constant(ids), "padding_mask": tf.ones_like(ids)}
        prefill_fns = {name: tf.function(lambda x, m=m: m(x)) for name, m in (("keras_hub", dense), ("sparse", sparse))}
        prefill_difference = float(np.abs(prefill_fns["keras_hub"](inputs).numpy() - prefill_fns["sparse"](inputs).numpy()).max())
        prefill = interleaved({name: (lambda f=f: f(inputs).numpy()) for name, f in prefill_fns.items()}, args.repeats)  # noqa: B023 (called within the iteration)

        length = 16 + args.new_tokens
        prompt = {"token_ids": np.where(np.arange(length) < 16, np.arange(1, length + 1), 0)[None].astype("int32"),
                  "padding_mask": (np.arange(length) < 16)[None].astype("int32")}
        outputs = {}
        for name, lm in (("keras_hub", dense_lm), ("sparse", sparse_lm)):
            lm.compile(sampler="greedy", jit_compile=False)
            outputs[name] = lambda lm=lm: lm.generate(prompt, max_length=length, stop_token_ids=None)["token_ids"]  # noqa: B023 (called within the iteration)
        same_tokens = bool(np.array_equal(outputs["keras_hub"](), outputs["sparse"]()))
        generate = interleaved(outputs, max(3, args.repeats // 2))
        results[shape] = {
            "experts_over_top_k": ratio,
            "block_ms": {k: round(v * 1e3, 2) for k, v in block.items()},
            "block_speedup": round(block["keras_hub"] / block["sparse"], 2),
            "block_target": round(0.6 * ratio, 2),
            "block_max_difference": difference,
            "prefill_ms": {k: round(v * 1e3, 1) for k, v in prefill.items()},
            "prefill_speedup": round(prefill["keras_hub"] / prefill["sparse"], 2),
            "prefill_max_difference": prefill_difference,
            "generate_tokens_per_s": {k: round(args.new_tokens / v, 1) for k, v in generate.items()},
            "generate_ratio": round(generate["keras_hub"] / generate["sparse"], 2),
            "generate_same_tokens": same_tokens,
        }
        print(shape, json.dumps(results[shape]), flush=True)
    print(json.dumps({"benchmark": "keras_hub_speedup", "tokens": args.tokens, "threads": args.threads, "hidden_dim": HIDDEN,
                      "layers": LAYERS, "backend": keras.backend.backend(), "results": results}))


if __name__ == "__main__":
    main()
