"""Strategies for `conf/strategy/`: `tf.distribute` on TensorFlow, `keras.distribution` on JAX.

Each factory returns the object whose `scope()` the model, optimizer and `compile` are built in
(`strategy_scope`), or None for one device on a backend without strategies. Bad settings fail here,
before any data or model is built, with the values in the message.

| option                   | backend    | devices                                                      |
|--------------------------|------------|--------------------------------------------------------------|
| `default`                | any        | one device                                                   |
| `mirrored`               | tensorflow | all local GPUs, or `cpu_devices` logical CPUs (for testing)  |
| `multi_worker_mirrored`  | tensorflow | the cluster in `TF_CONFIG` (`keras-moe launch` writes it)    |
| `tpu`                    | tensorflow | the TPU at `tpu` (a name or `grpc://` address)                |
| `data_parallel`          | jax        | all (or `num_devices`) devices, batch split                  |
| `expert_parallel`        | jax        | a `batch` x `expert` mesh, expert weights split              |
"""

import contextlib
import logging

import keras

from keras_moe.distribution import expert_parallel
from keras_moe.distribution.keras_fixes import fix_keras_distributed_fit
from keras_moe.distribution.replicas import num_replicas_in_sync
from keras_moe.distribution.tf_config import parse_tf_config
from keras_moe.utils.validation import check_positive_int


def default_strategy():
    """One device: TensorFlow's default strategy, or nothing to enter on other backends."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy()
    return None


def mirrored_strategy(num_replicas=None, cpu_devices=None):
    """`tf.distribute.MirroredStrategy` on this host's GPUs, or on `cpu_devices` logical CPU devices.

    Args:
        num_replicas: replicas to use (default: every GPU, else every logical CPU device).
        cpu_devices: without GPUs, split the CPU into this many logical devices first (must happen
            before TensorFlow starts its runtime; the CLI creates the strategy first thing).
    """
    tf = _tensorflow("mirrored")
    if cpu_devices is not None:
        _logical_cpus(tf, check_positive_int("cpu_devices", cpu_devices))
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if num_replicas is None:
        num_replicas = len(devices)
    num_replicas = check_positive_int("num_replicas", num_replicas)
    if num_replicas > len(devices):
        raise ValueError(f"strategy `mirrored` asks for num_replicas={num_replicas} but this host has "
                         f"{len(devices)} device(s): {[d.name for d in devices]} (on CPU set `strategy.cpu_devices`).")
    fix_keras_distributed_fit()
    return tf.distribute.MirroredStrategy([d.name for d in devices[:num_replicas]])


def multi_worker_mirrored_strategy(communication="auto"):
    """`tf.distribute.MultiWorkerMirroredStrategy` over the workers of `TF_CONFIG` (checked first).

    Also applies `keras_moe.distribution.fix_keras_distributed_fit` (keras-team/keras#20585) so that plain
    `model.fit` works. `communication`: `"auto"`, `"ring"` (gRPC, CPUs) or `"nccl"` (GPUs).
    """
    tf = _tensorflow("multi_worker_mirrored")
    parse_tf_config()
    implementations = {"auto": "AUTO", "ring": "RING", "nccl": "NCCL"}
    if communication not in implementations:
        raise ValueError(f"`communication` must be one of {sorted(implementations)}. Received: communication={communication!r}")
    fix_keras_distributed_fit()
    # TensorFlow logs one INFO line per collective; under Hydra's INFO root logger that floods the run log.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=getattr(tf.distribute.experimental.CommunicationImplementation, implementations[communication]))
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def tpu_strategy(tpu="", zone=None, project=None):
    """`tf.distribute.TPUStrategy` on the TPU named by `tpu` (`""`: the local TPU VM; or a `grpc://` address)."""
    tf = _tensorflow("tpu")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu, zone=zone, project=project)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as error:  # the resolver's own errors do not say which address was tried
        raise ValueError(f"strategy `tpu` cannot reach the TPU at tpu={tpu!r} (zone={zone!r}, project={project!r}): {error}") from error
    fix_keras_distributed_fit()
    return tf.distribute.TPUStrategy(resolver)


def data_parallel_strategy(num_devices=None):
    """JAX: `keras.distribution.DataParallel`, set as the global distribution (the batch is split)."""
    distribution = expert_parallel.data_parallel_distribution(num_devices)
    keras.distribution.set_distribution(distribution)
    return distribution


def expert_parallel_strategy(num_experts, expert_axis_size, batch_axis_size=None):
    """JAX: a `batch` x `expert` mesh; expert banks split along `expert` (see `keras_moe.distribution`)."""
    distribution = expert_parallel.expert_parallel_distribution(num_experts, expert_axis_size, batch_axis_size)
    keras.distribution.set_distribution(distribution)
    return distribution


def strategy_scope(strategy):
    """`strategy.scope()` (a `tf.distribute` strategy or a `keras.distribution`), or a null context."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def batch_splits(strategy):
    """How many parts each global batch is split into: replicas, or the batch axis of a JAX mesh."""
    if hasattr(strategy, "device_mesh") and hasattr(strategy, "batch_dim_name"):  # a keras.distribution
        return expert_parallel.batch_shards(strategy)
    return num_replicas_in_sync(strategy)


def check_batch_size(batch_size, strategy):
    """The global batch must split evenly over replicas; returns the per-replica batch size."""
    splits = batch_splits(strategy)
    if batch_size % splits:
        raise ValueError(f"The global batch size must be divisible by the number of replicas. Received: "
                         f"batch_size={batch_size}, replicas={splits} ({type(strategy).__name__})")
    return batch_size // splits


def _tensorflow(name):
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"strategy `{name}` is a tf.distribute strategy and needs KERAS_BACKEND=tensorflow. "
                         f"Received backend: {keras.backend.backend()!r} (on JAX use strategy=data_parallel or expert_parallel).")
    import tensorflow as tf

    return tf


def _logical_cpus(tf, count):
    """Splits the first CPU into `count` logical devices (a no-op if it already is)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        have = len(tf.config.list_logical_devices("CPU"))
        raise ValueError(f"Cannot split the CPU into cpu_devices={count} logical devices: TensorFlow has already "
                         f"started with {have}. Create the strategy before any TensorFlow operation.") from error
