"""WORKAROUND for keras-team/keras#20585: Keras 3 `model.fit` under `tf.distribute` strategies.

Upstream issue: https://github.com/keras-team/keras/issues/20585 (open; reproduced with Keras 3.15.1
and TensorFlow 2.21). `model.fit` fails in two places of `keras/src/backend/tensorflow/trainer.py`;
this module replaces exactly those two steps, and nothing else:

1. `TensorFlowTrainer._maybe_symbolic_build` averages the first input batch over replicas with
   `strategy.reduce("MEAN", batch, axis=None)` only to read its shapes. Under
   `MultiWorkerMirroredStrategy` that is a collective on a nested structure and raises `ValueError:
   Attempt to convert a value (PerReplica:{...}) with an unsupported type` (the error of #20585); under
   `MirroredStrategy` it fails on boolean inputs such as a padding mask (`Value for attr 'T' of bool is
   not in the list of allowed values ... AddN`). Reading that batch also starts an extra pass over the
   dataset, so a reshuffling dataset is seen in another order than on one device. Fix, for every
   `tf.distribute` strategy: take one replica's shapes and dtypes from the dataset's `element_spec`
   (nothing is read; if the spec is not plain tensors, the first local replica's batch).
2. In multi-worker mode only, `reduce_per_replica(logs, strategy, "auto")` averages each step's logs with
   `strategy.reduce("MEAN", v, axis=0)`, which fails on scalar logs (`Invalid reduction dimension 0 for
   input with 0 dimensions`) and would collapse vector ones. Fix: `axis=None`, the element-wise mean
   over replicas that Keras computes on a single worker.

Delete this module once the upstream issue is fixed (the multi-worker test in
`tests/distribution/test_multi_worker.py` then passes without it).
"""

import keras

_APPLIED = "_keras_moe_multi_worker_fix"


def fix_keras_distributed_fit():
    """Patches the two steps of Keras's TensorFlow trainer named above (idempotent; TF backend only).

    Returns True when the fix is in place. The `mirrored`, `multi_worker_mirrored` and `tpu` strategy
    factories of `keras_moe.cli.strategies` call it; call it yourself before `model.fit` if you create
    a `tf.distribute` strategy in your own code.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, _APPLIED, False):
        return True
    build, reduce = trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica
    multi_worker = trainer._collective_all_reduce_multi_worker

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and strategy is not None:
            data_batch = _local_batch_spec(iterator)
            if data_batch is None:
                data_batch = _first_local_batch(iterator, strategy)
            iterator = None
        return build(self, iterator=iterator, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and multi_worker(strategy):
            return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    setattr(trainer, _APPLIED, True)
    return True


def _local_batch_spec(iterator):
    """`tf.TensorSpec`s of one replica's batch, from the distributed dataset's `element_spec`; None if unknown."""
    import tensorflow as tf

    spec = getattr(getattr(iterator, "_distributed_dataset", None), "element_spec", None)
    if spec is None:
        return None

    def local(leaf):
        leaf = leaf._value_specs[0] if hasattr(leaf, "_value_specs") else leaf  # PerReplicaSpec -> replica 0
        if not isinstance(leaf, tf.TensorSpec):
            raise TypeError(leaf)
        return leaf

    try:
        return keras.tree.map_structure(local, spec)
    except TypeError:
        return None


def _first_local_batch(iterator, strategy):
    """The first batch this worker's first replica sees (a structure of plain tensors)."""
    import tensorflow as tf

    for _, _, batches in iterator:
        batch = next(batches)
        break
    first = lambda v: strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v  # noqa: E731
    return keras.tree.map_structure(first, batch)
