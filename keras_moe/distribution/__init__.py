"""Scaling out on existing engines: `tf.distribute` helpers and Keras's distribution API on JAX.

- `cross_replica_sum`: global-batch sums inside a `tf.distribute` step (routing statistics, aux losses).
- `fix_keras_distributed_fit`: the labelled workaround that lets Keras 3 `model.fit` run under
  `MultiWorkerMirroredStrategy` (keras-team/keras#20585).
- `ReplicaLocalLosses`: `add_loss` kept per replica thread (MoELayer; needed once `call` all-reduces).
- `parse_tf_config`, `worker_tf_configs`: validated `TF_CONFIG` handling.
- `expert_parallel_distribution`, `expert_layout_map`: a `batch` x `expert` device mesh on JAX that
  shards stacked expert weights along the expert axis.
"""

from keras_moe.distribution.expert_parallel import (
    data_parallel_distribution,
    expert_layout_map,
    expert_parallel_distribution,
)
from keras_moe.distribution.keras_fixes import fix_keras_distributed_fit
from keras_moe.distribution.replicas import cross_replica_sum, num_replicas_in_sync
from keras_moe.distribution.tf_config import parse_tf_config, worker_tf_configs
