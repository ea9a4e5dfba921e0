"""Shared helpers for dispatch tests: a tiny expert bank, numpy expert maths, the dense oracle, gradients."""

import keras
import numpy as np
from keras import ops

from keras_moe.experts import ExpertBank
from tests.conftest import random_tokens, to_numpy

NUM_EXPERTS, HIDDEN, FFN = 4, 8, 16


def make_bank(use_bias=False, activation="swiglu", num_experts=NUM_EXPERTS, seed=0):
    bank = ExpertBank(num_experts=num_experts, intermediate_dim=FFN, activation=activation, use_bias=use_bias)
    bank.build((num_experts, 1, HIDDEN))
    rng = np.random.default_rng(seed)
    for variable in bank.weights:  # non-zero biases too, so that bias bugs show
        variable.assign(rng.standard_normal(variable.shape).astype("float32") * 0.5)
    return bank


def np_expert(bank, expert, x):
    """Expert `expert` of `bank` on rows `x [n, h]`, in float64 numpy."""
    x = np.asarray(x, "float64")
    hidden = x @ ops.convert_to_numpy(bank.in_kernel)[expert].astype("float64")
    if bank.use_bias:
        hidden = hidden + ops.convert_to_numpy(bank.in_bias)[expert]
    if bank.activation == "swiglu":
        gate, up = np.split(hidden, 2, axis=-1)
        hidden = gate / (1.0 + np.exp(-gate)) * up
    elif bank.activation == "relu":
        hidden = np.maximum(hidden, 0.0)
    else:
        raise NotImplementedError(bank.activation)
    out = hidden @ ops.convert_to_numpy(bank.out_kernel)[expert].astype("float64")
    if bank.use_bias:
        out = out + ops.convert_to_numpy(bank.out_bias)[expert]
    return out


def np_oracle(bank, tokens, expert_index, expert_weight):
    """`out[t] = sum_k w[t, k] * expert_{idx[t, k]}(x[t])` in numpy."""
    out = np.zeros(tokens.shape, "float64")
    for t in range(tokens.shape[0]):
        for k in range(expert_index.shape[1]):
            out[t] += expert_weight[t, k] * np_expert(bank, expert_index[t, k], tokens[t : t + 1])[0]
    return out


def keras_oracle(bank, tokens, expert_index, expert_weight):
    """The same dense reference in keras ops (differentiable): every expert on every token."""
    everything = bank.call_all(tokens)  # [t, e, h]
    chosen = ops.take_along_axis(everything, ops.convert_to_tensor(expert_index)[:, :, None], axis=1)
    return ops.einsum("tkh,tk->th", chosen, expert_weight)


def value_and_grads(fn, bank, tokens, weight, cotangent):
    """Runs `fn(tokens, weight) -> [t, h]`; returns the output and the gradients of
    `sum(output * cotangent)` w.r.t. tokens, weight and every trainable variable of `bank`."""
    variables = bank.trainable_variables
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x, w = tf.constant(tokens), tf.constant(weight)
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            out = fn(x, w)
            loss = tf.reduce_sum(out * cotangent)
        grads = tape.gradient(loss, [x, w] + [v.value for v in variables])
        grads = [np.zeros(t.shape, "float32") if g is None else tf.convert_to_tensor(g).numpy() for g, t in zip(grads, [x, w] + variables)]
        return out.numpy(), grads
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def loss(x, w, values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                out = fn(x, w)
            return jnp.sum(out * cotangent), out

        values = [v.value for v in variables]
        (gx, gw, gv), out = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(
            jnp.asarray(tokens), jnp.asarray(weight), values
        )
        return np.asarray(out), [np.asarray(g) for g in [gx, gw, *gv]]
    raise NotImplementedError(backend)


def distinct_choices(num_tokens, num_experts, top_k, seed):
    """Random `[t, k]` expert indices, distinct within a row, and positive weights."""
    rng = np.random.default_rng(seed)
    index = np.stack([rng.permutation(num_experts)[:top_k] for _ in range(num_tokens)]).astype("int32")
    weight = rng.uniform(0.1, 1.0, (num_tokens, top_k)).astype("float32")
    return index, weight


def np_capacity_kept(expert_index, num_experts, capacity, mask=None):
    """Choice-major, then token-order priority: the reference for which (token, choice) pairs fit."""
    t, k = expert_index.shape
    mask = np.ones(t) if mask is None else np.asarray(mask)
    fill = np.zeros(num_experts, int)
    kept = np.zeros((t, k), bool)
    slot = np.full((t, k), num_experts * capacity)
    for choice in range(k):
        for token in range(t):
            if mask[token] <= 0:
                continue
            e = expert_index[token, choice]
            if fill[e] < capacity:
                kept[token, choice] = True
                slot[token, choice] = e * capacity + fill[e]
            fill[e] += 1
    return slot, kept


def compiled(fn):
    """`fn` compiled: `jax.jit` under JAX, `tf.function(jit_compile=True)` (XLA) under TensorFlow."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, autograph=False)
    raise NotImplementedError(backend)


def mask_dtype_params():
    """float32, int32 and bool masks (Keras masks are bool)."""
    return ["float32", "int32", "bool"]


def assert_per_token_and_permutation_equivariant(dispatch, num_tokens=7, top_k=2):
    """`dispatch(tokens, index, weight, bank) -> (outputs, ...)`: each token's output does not depend
    on the other tokens, and permuting the tokens permutes the outputs."""
    bank = make_bank(use_bias=True)
    tokens = random_tokens(num_tokens, HIDDEN, seed=6)
    index, weight = distinct_choices(num_tokens, NUM_EXPERTS, top_k, seed=7)
    outputs = to_numpy(dispatch(tokens, index, weight, bank)[0])
    for i in range(num_tokens):
        alone = dispatch(tokens[i : i + 1], index[i : i + 1], weight[i : i + 1], bank)[0]
        np.testing.assert_allclose(to_numpy(alone)[0], outputs[i], rtol=1e-5, atol=1e-6)
    perm = np.random.default_rng(0).permutation(num_tokens)
    permuted = dispatch(tokens[perm], index[perm], weight[perm], bank)[0]
    np.testing.assert_allclose(to_numpy(permuted), outputs[perm], rtol=1e-5, atol=1e-6)
