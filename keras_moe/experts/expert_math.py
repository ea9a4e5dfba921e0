"""The maths of a bank of feed-forward experts, shared by every class that holds expert weights.

Axis letters: `e` experts, `c` capacity (tokens per expert), `t` tokens, `k` choices per token,
`n` rows sorted by expert, `h` hidden, `f` expert FFN (`2f` for fused gate/up projections).

`ExpertMath` is a mixin: a class gives it its weights through `base_kernel(name)` and
`expert_bias(name)` (names `"in"`, `"gate"`, `"up"`, `"out"`), `expert_output_scale()`, and the
attributes `num_experts`, `expert_activation` (an `ExpertActivation`) and `gate_up_layout`.
`ExpertBank` holds its own weights; the keras-hub adapters (`keras_moe.hub`) give keras-hub's
expert weights, in keras-hub's own layout, to the same maths, so no weight is ever copied.
`expert_kernel(name)` is the base kernel plus, after `enable_lora`, its low-rank update
(`keras_moe.experts.lora.ExpertLoRA`).

Gate/up layouts of gated experts (`gate_up_layout`):
- `"fused"`: one `in` kernel `[e, h, 2f]`, gate half first (keras-moe, keras-hub's Qwen-MoE);
- `"interleaved"`: one `in` kernel `[e, h, 2f]`, gate columns `0::2`, up columns `1::2` (GPT-OSS);
- `"separate"`: `gate` and `up` kernels `[e, h, f]` each (keras-hub's Mixtral and Gemma 4).

Four entry points, same maths:
- `call_buffers(x)`: `x [e, c, h] -> [e, c, h]`, each expert on its own buffer (capacity,
  expert-choice and Soft MoE dispatch);
- `call_grouped(x, group_sizes)`: `x [n, h]` rows sorted by expert -> `[n, h]` (dropless);
- `call_all(x)`: `x [t, h] -> [t, e, h]`, every expert on every token (the test oracle);
- `call_gathered(x, expert_index, expert_weight)`: `x [t, h]`, `expert_index [t, k]`, combine
  weights `[t, k]` -> `[t, h]`, each token through its chosen experts with the kernels gathered per
  choice, combined (few tokens: decoding);
- `call_blocks(x, block_expert)`: `x [m, B, h]` blocks of rows, `block_expert [m]` -> `[m, B, h]`,
  each block through its own expert (static-shape dropless dispatch).
"""

import keras
from keras import ops

from keras_moe.dispatch.gather import take_rows
from keras_moe.dispatch.grouped_matmul import grouped_matmul, split_apply, supports_split_apply
from keras_moe.experts.block_loop import map_blocks

GATE_UP_LAYOUTS = ("fused", "interleaved", "separate")

# Whole-expert-per-group (`split_apply`) beats two grouped matmuls up to about 32 experts on
# TensorFlow/CPU (4,096 tokens, h 256, f 512, top-2, fwd+bwd: 55 vs 61 ms at 8 experts, 56 vs 63 at 16,
# 68 vs 70 at 32, 77 vs 75 at 64); past that its per-expert activation ops cost more than the copies it saves.
SPLIT_APPLY_MAX_EXPERTS = 32


def blocks_in_loop():
    """Whether `call_blocks` runs its blocks in a loop of 2-D matmuls (JAX) rather than one batched matmul."""
    return keras.backend.backend() == "jax"


def split_gate_up(hidden, layout):
    """`[..., 2f]` -> `(gate, up)` for the fused or interleaved layout."""
    if layout == "interleaved":
        return hidden[..., 0::2], hidden[..., 1::2]
    return ops.split(hidden, 2, axis=-1)


class ExpertMath:
    """Mixin: the expert computations over weights given by `expert_kernel`/`expert_bias` (see module)."""

    def expert_in_names(self):
        """The input projections: `("gate", "up")` for separate gated kernels, else `("in",)`."""
        return ("gate", "up") if self.expert_activation.gated and self.gate_up_layout == "separate" else ("in",)

    def _hidden(self, inputs, project):
        """The activated input projections; `project(x, name)` applies weight `name` (and its bias) in the caller's layout."""
        activation = self.expert_activation
        if self.expert_in_names() == ("gate", "up"):
            return activation(project(inputs, "gate"), project(inputs, "up"))
        hidden = project(inputs, "in")
        return activation(*split_gate_up(hidden, self.gate_up_layout)) if activation.gated else activation(hidden)

    def _feed_forward(self, inputs, project):
        """`project(x, name)` applies weight `name` (and its bias) in the caller's layout."""
        return project(self._hidden(inputs, project), "out")

    def expert_kernel(self, name):
        """The kernel `name` the experts compute with (the base kernel; LoRA adds its update)."""
        return self.base_kernel(name)

    def call_buffers(self, inputs):
        """`[e, c, h] -> [e, c, h]`."""

        def project(x, name):
            y = ops.einsum("ecd,edf->ecf", x, self.expert_kernel(name))
            bias = self.expert_bias(name)
            return y if bias is None else y + bias[:, None, :]

        outputs = self._feed_forward(inputs, project)
        scale = self.expert_output_scale()
        return outputs if scale is None else outputs * ops.cast(scale, outputs.dtype)[:, None, None]

    def call_every(self, inputs):
        """Every expert on every token as batched matmuls over the stored kernels: `[t, h] -> [e, t, h]`.

        The kernels are used as stored (`[e, h, f]`): an einsum over them can transpose whole kernels.
        """
        num_tokens = ops.shape(inputs)[0]

        def project(x, name):
            kernel = self.expert_kernel(name)
            if len(x.shape) == 2:  # the first projection: the same rows for every expert
                x = ops.broadcast_to(x[None], (self.num_experts, num_tokens, x.shape[-1]))
            y = ops.matmul(x, ops.cast(kernel, x.dtype))
            bias = self.expert_bias(name)
            return y if bias is None else y + bias[:, None, :]

        outputs = self._feed_forward(inputs, project)
        scale = self.expert_output_scale()
        return outputs if scale is None else outputs * ops.cast(scale, outputs.dtype)[:, None, None]

    def call_all(self, inputs):
        """Every expert on every token: `[t, h] -> [t, e, h]`. Slow; the oracle for tests."""

        def project(x, name):
            equation = "td,edf->tef" if name in ("in", "gate", "up") else "ted,edf->tef"
            y = ops.einsum(equation, x, self.expert_kernel(name))
            bias = self.expert_bias(name)
            return y if bias is None else y + bias[None]

        outputs = self._feed_forward(inputs, project)
        scale = self.expert_output_scale()
        return outputs if scale is None else outputs * ops.cast(scale, outputs.dtype)[None, :, None]

    def call_gathered(self, inputs, expert_index, expert_weight):
        """`[t, h]`, chosen experts `[t, k]` and combine weights `[t, k]` -> `sum_k weight * expert(x)` `[t, h]`.

        Reads each choice's kernels by index (`take_rows`, `[t, k, d, f]`) and multiplies each
        token's `[1, h]` row by its `k` kernels in one broadcast batched matmul; the combine
        weights scale the hidden activations, so the output projection and the sum over choices are
        one batched matmul over `k f` (no repeat, squeeze or separate combine: a decoding step on
        TensorFlow pays per op, whatever its size).
        """
        top_k = expert_index.shape[1]
        weight = ops.cast(expert_weight, inputs.dtype)
        scale = self.expert_output_scale()
        if scale is not None:
            weight = weight * ops.cast(take_rows(scale, expert_index), weight.dtype)

        def project(x, name):  # x [t, 1, 1, d] or [t, k, 1, d] -> [t, k, 1, f]
            y = ops.matmul(x, ops.cast(take_rows(self.expert_kernel(name), expert_index), x.dtype))
            bias = self.expert_bias(name)
            return y if bias is None else y + ops.cast(take_rows(bias, expert_index), y.dtype)[:, :, None, :]

        rows = ops.reshape(inputs, (-1, 1, 1, inputs.shape[-1]))
        if inputs.shape[0] == 1 and keras.backend.backend() == "jax":
            # XLA rewrites a broadcast lhs into a dot that transposes the gathered kernels: with the
            # row repeated one token ran 20% faster, while at 8 tokens the broadcast ran 25% faster
            # (raw-JAX A/B, benchmarks/RESULTS.md "Decoding speed").
            rows = ops.repeat(rows, top_k, axis=1)
        hidden = self._hidden(rows, project)  # [t, k, 1, f]
        width = hidden.shape[-1]
        hidden = ops.reshape(hidden * ops.reshape(weight, (-1, top_k, 1, 1)), (-1, 1, top_k * width))
        kernel = ops.reshape(take_rows(self.expert_kernel("out"), expert_index), (-1, top_k * width, inputs.shape[-1]))
        outputs = ops.reshape(ops.matmul(hidden, ops.cast(kernel, hidden.dtype)), (-1, inputs.shape[-1]))
        bias = self.expert_bias("out")
        if bias is not None:
            outputs = outputs + ops.sum(ops.cast(take_rows(bias, expert_index), weight.dtype) * weight[:, :, None], axis=1)
        return outputs

    def call_blocks(self, inputs, block_expert):
        """`[m, B, h]` blocks and each block's expert `[m]` -> `[m, B, h]`.

        On JAX the blocks run one at a time in a loop (`keras.ops.map`, a `lax.map`), each as 2-D
        matmuls with its expert's kernels read by index: XLA:CPU runs a batched matmul's blocks one
        after the other on one thread, while it spreads a large 2-D matmul over the cores, and the
        loop reads each kernel where it lies instead of gathering `m` copies first. Elsewhere (and
        on TensorFlow under XLA, where the loop's backward pass is slower): one batched matmul over
        the gathered kernels. From 16 experts up the loop's backward pass adds each block's weight
        gradients into its expert's slice in place (`keras_moe.experts.block_loop`). Figures:
        `benchmarks/RESULTS.md`, "JAX: blocks in a loop" and the section after it.
        """
        names = (*self.expert_in_names(), "out")
        params = {f"kernel/{name}": self.expert_kernel(name) for name in names}  # LoRA adds its update once, outside the loop
        params.update({f"bias/{name}": self.expert_bias(name) for name in names})
        params["scale"] = self.expert_output_scale()
        params = {key: ops.convert_to_tensor(value) for key, value in params.items() if value is not None}

        def run(p, x):  # p: the block's expert's weights; x one block [B, h] (p unbatched), or [m, B, h] (p [m, ...])
            def project(v, name):
                y = ops.matmul(v, ops.cast(p[f"kernel/{name}"], v.dtype))
                bias = p.get(f"bias/{name}")
                return y if bias is None else y + ops.cast(ops.expand_dims(bias, -2), y.dtype)

            y = self._feed_forward(x, project)
            if "scale" not in p:
                return y
            return y * ops.cast(ops.reshape(p["scale"], tuple(p["scale"].shape) + (1, 1)), y.dtype)

        if blocks_in_loop():
            return map_blocks(run, params, inputs, block_expert)
        return run({key: ops.take(value, block_expert, axis=0) for key, value in params.items()}, inputs)

    def call_grouped(self, inputs, group_sizes):
        """`inputs [n, h]` sorted by expert with `group_sizes [e]` rows each; rows past the groups give zeros."""
        if supports_split_apply() and self.num_experts <= SPLIT_APPLY_MAX_EXPERTS:
            return split_apply(inputs, group_sizes, self._per_expert_fn())
        num_rows = ops.shape(inputs)[0]

        def project(x, name):
            y = grouped_matmul(x, self.expert_kernel(name), group_sizes)
            bias = self.expert_bias(name)
            return y if bias is None else y + repeat_rows(bias, group_sizes, num_rows)

        outputs = self._feed_forward(inputs, project)
        scale = self.expert_output_scale()
        if scale is not None:
            outputs = outputs * ops.cast(repeat_rows(scale[:, None], group_sizes, num_rows), outputs.dtype)
        return outputs

    def _per_expert_fn(self):
        """`fn(i, rows)`: expert `i` on its rows. Weights are unstacked once (one gradient op, not e slices)."""
        names = self.expert_in_names() + ("out",)
        kernels = {name: ops.unstack(self.expert_kernel(name), axis=0) for name in names}
        biases = {name: self.expert_bias(name) for name in names}
        biases = {name: None if b is None else ops.unstack(b, axis=0) for name, b in biases.items()}
        scale = self.expert_output_scale()
        scales = None if scale is None else ops.unstack(scale, axis=0)

        def fn(i, rows):
            def project(x, name):
                y = ops.matmul(x, ops.cast(kernels[name][i], x.dtype))
                return y if biases[name] is None else y + biases[name][i]

            outputs = self._feed_forward(rows, project)
            return outputs if scales is None else outputs * ops.cast(scales[i], outputs.dtype)

        return fn


def repeat_rows(per_expert, group_sizes, num_rows):
    """`[e, d]` -> `[n, d]`: each expert's row repeated for its group; zeros past the groups."""
    expert_of_row = ops.searchsorted(ops.cumsum(group_sizes), ops.arange(num_rows, dtype=group_sizes.dtype), side="right")
    padded = ops.concatenate([per_expert, ops.zeros_like(per_expert[:1])], axis=0)
    return ops.take(padded, ops.minimum(expert_of_row, ops.shape(per_expert)[0]), axis=0)


def check_gate_up_layout(layout, activation):
    if layout not in GATE_UP_LAYOUTS:
        raise ValueError(f"`gate_up_layout` must be one of {list(GATE_UP_LAYOUTS)}. Received: gate_up_layout={layout!r}")
    if layout != "fused" and not activation.gated:
        raise ValueError(
            f"`gate_up_layout={layout!r}` needs a gated activation (one of swiglu, geglu, ...); "
            f"received activation={activation.config!r}."
        )
    return layout

