"""Expert and data parallelism on the JAX backend with Keras's distribution API (`keras.distribution`).

A `DeviceMesh` with axes `("batch", "expert")`; a `LayoutMap` that shards every `ExpertBank`'s stacked
weights (`in_kernel [e, h, f]`, `out_kernel [e, f, h]`, biases `[e, .]`) along `e` over the `expert`
axis; every other weight is replicated and the data is sharded along `batch`. XLA (GSPMD) inserts the
collectives, so the model code is the same as on one device.

```python
# backends: jax
devices = keras.distribution.list_devices()
dist = expert_parallel_distribution(num_experts=8, expert_axis_size=len(devices))  # e.g. 4 devices: 2 experts each
keras.distribution.set_distribution(dist)  # then build, compile and fit as usual
keras.distribution.set_distribution(None)
```

Each device then holds `num_experts / expert_axis_size` experts of each bank.
"""

import keras

from keras_moe.utils.validation import check_positive_int

# Paths of ExpertBank weights, e.g. "moe_transformer_backbone/transformer_block_0/moe/experts/in_kernel";
# `(.*/)?` keeps `shared_experts/...` (a replicated dense FFN) out.
EXPERT_KERNELS = r"(.*/)?experts/(in|out)_kernel"
EXPERT_BIASES = r"(.*/)?experts/(in|out)_bias"


def expert_layout_map(device_mesh, expert_axis="expert"):
    """`LayoutMap` sharding stacked expert weights along their first (expert) axis over `expert_axis`."""
    layout_map = keras.distribution.LayoutMap(device_mesh)
    layout_map[EXPERT_KERNELS] = (expert_axis, None, None)
    layout_map[EXPERT_BIASES] = (expert_axis, None)
    return layout_map


def expert_parallel_distribution(num_experts, expert_axis_size, batch_axis_size=None, devices=None):
    """`keras.distribution.ModelParallel` over a `(batch, expert)` mesh.

    Args:
        num_experts: experts per MoE layer; must be divisible by `expert_axis_size`.
        expert_axis_size: devices each expert bank is split over.
        batch_axis_size: data-parallel groups; default: all devices / `expert_axis_size`.
        devices: device names; default `keras.distribution.list_devices()`.

    Raises `ValueError` naming the values when the mesh does not fit the devices or the experts.
    """
    _check_jax("expert_parallel")
    devices = list(devices or keras.distribution.list_devices())
    expert_axis_size = check_positive_int("expert_axis_size", expert_axis_size)
    if num_experts % expert_axis_size:
        raise ValueError(f"`num_experts` must be divisible by the expert axis. Received: num_experts={num_experts}, "
                         f"expert_axis_size={expert_axis_size}")
    if batch_axis_size is None:
        batch_axis_size = max(1, len(devices) // expert_axis_size)
    batch_axis_size = check_positive_int("batch_axis_size", batch_axis_size)
    needed = batch_axis_size * expert_axis_size
    if needed > len(devices):
        raise ValueError(f"The mesh batch_axis_size={batch_axis_size} x expert_axis_size={expert_axis_size} needs "
                         f"{needed} devices; {len(devices)} available: {devices}")
    mesh = keras.distribution.DeviceMesh((batch_axis_size, expert_axis_size), ("batch", "expert"), devices[:needed])
    return keras.distribution.ModelParallel(layout_map=expert_layout_map(mesh), batch_dim_name="batch")


def data_parallel_distribution(num_devices=None, devices=None):
    """`keras.distribution.DataParallel` over the first `num_devices` devices (default: all)."""
    _check_jax("data_parallel")
    devices = list(devices or keras.distribution.list_devices())
    if num_devices is not None:
        num_devices = check_positive_int("num_devices", num_devices)
        if num_devices > len(devices):
            raise ValueError(f"`num_devices={num_devices}` is more than the {len(devices)} devices available: {devices}")
        devices = devices[:num_devices]
    return keras.distribution.DataParallel(devices=devices)


def batch_shards(distribution):
    """How many ways a `keras.distribution` splits the batch (the size of its batch mesh axis)."""
    mesh = distribution.device_mesh
    return int(mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)])


def _check_jax(name):
    if keras.backend.backend() != "jax":
        raise ValueError(f"strategy `{name}` uses Keras's distribution API and needs KERAS_BACKEND=jax. "
                         f"Received backend: {keras.backend.backend()!r}")
