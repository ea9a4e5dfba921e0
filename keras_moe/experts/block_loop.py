"""JAX: blocks of rows through their own experts in a loop, with a backward pass that adds each
block's weight gradient into its expert's slice in place (MegaBlocks' grouped backward, Gale et al. 2023).

Axis letters: `m` blocks, `B` rows per block, `h` hidden, `e` experts.

Autodiff of a `lax.map` whose body reads `params[block_expert[i]]` turns each read into a
scatter-add into a zero array of the full `[e, ...]` shape, added to the running gradient: at 64
experts (h 256, f 512, 64-row blocks) that backward pass took 4-5x the forward pass. Here the
backward pass is a `fori_loop` that recomputes the block's forward (no activations are stored),
and adds the block's weight gradients into the expert's slice of the gradient it carries
(`dynamic_update_slice`, in place). The full-size scatter-add of autodiff costs in proportion to
all experts' weights, every block; the loop's own backward pays off from 16 experts up
(`benchmarks/block_backward.py`, MoE layer fwd+bwd, 4,096 tokens, h 256, f 512, own / autodiff in
one process: 0.75-0.88 at 64 experts, 0.85-0.90 at 32, 0.91-0.94 at 16, 1.02-1.07 at 8;
`benchmarks/RESULTS.md`, "JAX: the blocks' own backward pass, and gathers instead of scatters").
"""

import keras
from keras import ops

# From this many experts up, the loop's own backward pass (below 16 experts: autodiff).
OWN_BACKWARD_MIN_EXPERTS = 16


def map_blocks(fn, params, inputs, block_expert):
    """`out[i] = fn({name: params[name][block_expert[i]]}, inputs[i])`, stacked: `[m, B, h]`.

    Args:
        fn: `fn(p, x) -> [B, h]`, one block through one expert whose weights are `p` (a dict of
            arrays, each `params[name]` without its leading expert axis).
        params: dict of float arrays `[e, ...]` (kernels, biases, output scale).
        inputs: `[m, B, h]`; block_expert: int32 `[m]`.

    On JAX with at least `OWN_BACKWARD_MIN_EXPERTS` experts the backward pass is the loop
    described above (its gradients equal autodiff's); otherwise `keras.ops.map` and autodiff.
    """
    inputs, block_expert = ops.convert_to_tensor(inputs), ops.convert_to_tensor(block_expert, "int32")
    num_experts = next(iter(params.values())).shape[0]
    if keras.backend.backend() != "jax" or num_experts < OWN_BACKWARD_MIN_EXPERTS:
        def run(args):
            return fn({name: ops.take(value, args[1], axis=0) for name, value in params.items()}, args[0])

        return ops.map(run, (inputs, block_expert))
    import jax
    from jax import lax

    def take(values, expert):
        return {name: lax.dynamic_index_in_dim(value, expert, 0, keepdims=False) for name, value in values.items()}

    @jax.custom_vjp
    def apply(params, inputs, block_expert):
        return lax.map(lambda args: fn(take(params, args[1]), args[0]), (inputs, block_expert))

    def forward(params, inputs, block_expert):
        return apply(params, inputs, block_expert), (params, inputs, block_expert)

    def backward(saved, d_outputs):
        params, inputs, block_expert = saved

        def body(i, carry):
            d_inputs, d_params = carry
            expert = block_expert[i]
            _, vjp = jax.vjp(fn, take(params, expert), inputs[i])
            d_block_params, d_block = vjp(d_outputs[i])
            d_inputs = lax.dynamic_update_index_in_dim(d_inputs, d_block.astype(d_inputs.dtype), i, 0)
            d_params = {
                name: lax.dynamic_update_index_in_dim(
                    grad, lax.dynamic_index_in_dim(grad, expert, 0, keepdims=False) + d_block_params[name].astype(grad.dtype), expert, 0
                )
                for name, grad in d_params.items()
            }
            return d_inputs, d_params

        zeros = (jax.numpy.zeros_like(inputs), {name: jax.numpy.zeros_like(value) for name, value in params.items()})
        d_inputs, d_params = lax.fori_loop(0, inputs.shape[0], body, zeros)
        return d_params, d_inputs, None

    apply.defvjp(forward, backward)
    return apply(params, inputs, block_expert)
