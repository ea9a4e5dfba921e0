"""`dispatch="auto"`: the fastest exact dispatch mode for the backend, platform and token count.

Every mode it picks is exact (no choice dropped), so `auto` changes speed, never outputs.
Measured with `benchmarks/dispatch_choice.py` (a compiled forward pass and a training step of one
layer per mode, 1 to 4,096 tokens, at e = 8 and 64 experts and h f = 128 x 128 and 512 x 1,024;
figures in `benchmarks/RESULTS.md`). With `t` tokens, `k` choices, `e` experts:

- JAX on CPU or GPU, and TensorFlow under XLA (`jit_compile=True`): a few tokens (decoding), where
  sorting and grouping cost more than the maths: `gathered` when `5 t k <= 512` (reading each
  choice's weights by index costs about 5 computed expert-rows), else `all_experts` when
  `t e <= 512`; otherwise `blocked`. `gathered` reads only the chosen experts' weights: the
  default MoE LM's decoding step (JAX, 8 experts, top-2, `benchmarks/decode_step.py`) ran at
  0.86-0.91x the dense LM's speed with it at batch 1 and 0.78-0.92x at batch 8, against
  0.52-0.66x and 0.37-0.46x computing every expert, whose weights (8 experts in each of 4 layers)
  no longer stay in cache, although a lone layer times every expert faster. At larger sizes the
  static block-sparse path wins: `ragged_dot` computes densely off TPU (4-7x slower than blocked at
  1,024-4,096 tokens here; 7.1x dense measured on an H200).
- TensorFlow without XLA: `gathered` for one token, else `dropless` (per-expert splits of exact
  sizes). When the token count is unknown while tracing at inference (a SavedModel signature's
  dynamic batch), the layer chooses between the two in the graph (`keras.ops.cond` on the count; a
  SavedModel's `generate` at batch 1 ran at 0.76-0.93x dense against 0.73-0.90x always splitting).
  The default MoE LM's decoding step (`benchmarks/decode_step.py`, 8 experts, top-2) ran at
  0.82-0.90x the dense LM's speed with `gathered` at batch 1 against 0.75-0.79x with the splits, and
  the splits won from 2 tokens up (batch 2: 0.82-0.88x against 0.74-0.79x; batch 8: 0.92x against
  0.66x, and 0.66x computing every expert), although a lone layer's forward pass
  (`dispatch_choice.py`) had timed every expert 10-27% faster at 4-64 tokens.
- JAX on TPU, PyTorch, or a token count unknown while tracing (one token aside, above): `dropless`
  (`ragged_dot` is the TPU's grouped matmul; splits on PyTorch).
"""

import keras

# Expert-rows (one token through one expert) beyond which a static-shape path's sorting and
# grouping pay off (crossover 64-256 tokens at e = 8, 8-16 at e = 64; dispatch_choice.py).
FEW_ROWS = 512
# Reading one choice's expert weights by index costs about this many computed expert-rows.
GATHER_COST = 5


def auto_mode(num_tokens, top_k, num_experts, backend=None, platform=None, xla=False):
    """The mode `dispatch="auto"` runs.

    Args:
        num_tokens: int, or None when unknown while tracing (then the grouped `dropless` path; the
            layer runs `auto_mode(1, ...)` instead for one token, chosen in the graph).
        top_k: int `k`; num_experts: int `e`.
        backend: Keras backend name (default: the current one); platform: JAX platform
            (`"cpu"`, `"gpu"`, `"tpu"`; default: JAX's default backend).
        xla: bool, TensorFlow is tracing for XLA (`jit_compile=True`).

    Example:

    ```python
    from keras_moe.dispatch import auto_mode

    assert auto_mode(1, 2, 8, backend="jax", platform="cpu") == "gathered"  # decoding
    assert auto_mode(4096, 2, 8, backend="jax", platform="cpu") == "blocked"  # training
    ```
    """
    backend = backend or keras.backend.backend()
    if backend not in ("tensorflow", "jax") or num_tokens is None:
        return "dropless"
    if backend == "jax" and (platform or _jax_platform()) == "tpu":
        return "dropless"
    if backend == "tensorflow" and not xla:
        return "gathered" if num_tokens == 1 else "dropless"
    if GATHER_COST * num_tokens * top_k <= FEW_ROWS:
        return "gathered"
    return "all_experts" if num_tokens * num_experts <= FEW_ROWS else "blocked"


def _jax_platform():
    import jax

    return jax.default_backend()
