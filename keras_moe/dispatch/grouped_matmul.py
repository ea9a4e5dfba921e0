"""Grouped matrix multiplication: the one backend-specific primitive of dropless dispatch.

`grouped_matmul(x [n, a], w [e, a, b], group_sizes [e]) -> [n, b]`: rows of `x` are sorted by
group; the first `group_sizes[0]` rows use `w[0]`, the next `group_sizes[1]` use `w[1]`, and so on.
Rows past `sum(group_sizes)` give zeros. Compute is `O(n a b)`, independent of `e`.

Implementations, chosen by backend (the benchmark `benchmarks/moe_layer.py` measured them):
- JAX: `jax.lax.ragged_dot`, XLA's grouped matmul.
- TensorFlow and PyTorch: split the rows by group and run one matmul per group (the graph runs
  them back to back; no padding, no wasted FLOPs).
- `split_apply(x, group_sizes, fn)`: TensorFlow and PyTorch run a whole expert (both matmuls and
  the activation) per group, so the `[n, f]` intermediate is never concatenated and split again.
- Any backend: `padded_grouped_matmul` scatters rows into an `[e, max(group_sizes), a]` buffer and
  uses one batched einsum (dynamic shapes, so not under `jax.jit`).
"""

import keras
from keras import ops


def grouped_matmul(x, w, group_sizes):
    """See the module docstring."""
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_grouped_matmul(x, w, group_sizes)
    if backend == "tensorflow":
        return _tf_grouped_matmul(x, w, group_sizes)
    if backend == "torch":
        return _torch_grouped_matmul(x, w, group_sizes)
    return padded_grouped_matmul(x, w, group_sizes)


def supports_split_apply():
    """True where `split_apply` is the faster grouped path (TensorFlow, PyTorch)."""
    return keras.backend.backend() in ("tensorflow", "torch")


def split_apply(x, group_sizes, fn):
    """`concat_i fn(i, x_i)` over the row groups of `x`, zeros for rows past the groups.

    `fn(i, rows)` maps `[n_i, a] -> [n_i, b]`; `b` is read from the first group's output.
    """
    num_groups = group_sizes.shape[0]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        group_sizes = tf.cast(group_sizes, "int32")
        rest = tf.shape(x)[0] - tf.reduce_sum(group_sizes)
        pieces = tf.split(x, tf.concat([group_sizes, rest[None]], axis=0), num=num_groups + 1, axis=0)
        outputs = [fn(i, pieces[i]) for i in range(num_groups)]
        outputs.append(tf.zeros((rest, outputs[0].shape[-1]), dtype=outputs[0].dtype))
        return tf.concat(outputs, axis=0)
    import torch

    sizes = [int(v) for v in group_sizes.tolist()]
    pieces = torch.split(x, sizes + [x.shape[0] - sum(sizes)], dim=0)
    outputs = [fn(i, pieces[i]) for i in range(num_groups)]
    outputs.append(outputs[0].new_zeros((pieces[-1].shape[0], outputs[0].shape[-1])))
    return torch.cat(outputs, dim=0)


def _jax_grouped_matmul(x, w, group_sizes):
    import jax
    import jax.numpy as jnp

    num_rows = x.shape[0]
    used = jnp.sum(group_sizes)
    # ragged_dot wants the groups to cover every row: give the leftover rows to a zero group.
    w = jnp.concatenate([w, jnp.zeros_like(w[:1])], axis=0)
    group_sizes = jnp.concatenate([group_sizes, (num_rows - used)[None]]).astype("int32")
    out = jax.lax.ragged_dot(x, w.astype(x.dtype), group_sizes)
    return out


def _tf_grouped_matmul(x, w, group_sizes):
    import tensorflow as tf

    num_experts = w.shape[0]
    group_sizes = tf.cast(group_sizes, "int32")
    rest = tf.shape(x)[0] - tf.reduce_sum(group_sizes)
    pieces = tf.split(x, tf.concat([group_sizes, rest[None]], axis=0), num=num_experts + 1, axis=0)
    # `unstack` has one gradient op (a stack); slicing `w[i]` would build e full-size gradients.
    weights = tf.unstack(tf.cast(w, x.dtype), num=num_experts, axis=0)
    outputs = [tf.matmul(pieces[i], weights[i]) for i in range(num_experts)]
    outputs.append(tf.zeros((rest, w.shape[-1]), dtype=x.dtype))
    return tf.concat(outputs, axis=0)


def _torch_grouped_matmul(x, w, group_sizes):
    import torch

    sizes = [int(s) for s in group_sizes.tolist()]
    rest = x.shape[0] - sum(sizes)
    pieces = torch.split(x, sizes + [rest], dim=0)
    w = w.to(x.dtype)
    outputs = [pieces[i] @ w[i] for i in range(len(sizes))]
    outputs.append(x.new_zeros((rest, w.shape[-1])))
    return torch.cat(outputs, dim=0)


def padded_grouped_matmul(x, w, group_sizes):
    """Portable grouped matmul through an `[e, max(group_sizes), a]` buffer and one einsum."""
    num_rows = ops.shape(x)[0]
    num_experts = ops.shape(w)[0]
    group_sizes = ops.cast(group_sizes, "int32")
    ends = ops.cumsum(group_sizes)
    starts = ends - group_sizes
    rows = ops.arange(num_rows, dtype="int32")
    group = ops.minimum(ops.searchsorted(ends, rows, side="right"), num_experts)  # e = past the groups
    position = rows - ops.take(ops.concatenate([starts, ends[-1:]]), group)
    capacity = ops.maximum(ops.max(group_sizes), 1)
    slot = ops.where(group < num_experts, group * capacity + position, num_experts * capacity)
    buffer = ops.zeros((num_experts * capacity + 1, ops.shape(x)[1]), x.dtype)
    buffer = ops.scatter_update(buffer, slot[:, None], x)
    buffer = ops.reshape(buffer[:-1], (num_experts, capacity, ops.shape(x)[1]))
    out = ops.einsum("eca,eab->ecb", buffer, ops.cast(w, x.dtype))
    out = ops.concatenate([ops.reshape(out, (-1, ops.shape(w)[-1])), ops.zeros((1, ops.shape(w)[-1]), x.dtype)], 0)
    return ops.take(out, slot, axis=0)
