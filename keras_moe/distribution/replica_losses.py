"""`add_loss` bookkeeping kept per replica thread, for layers that all-reduce inside `call`.

`tf.distribute.MirroredStrategy` runs its replicas as Python threads over the *same* layer objects,
and Keras 3 keeps `add_loss` losses in one plain list per layer (`Layer._losses`). Replicas normally
run `call` + `compute_loss` without yielding, so the list is never shared. A cross-replica sum inside
`call` (`cross_replica_sum`, used for global routing statistics) is a merge point where the threads
interleave: replica 1 then reads replica 0's losses as well, and the logged loss counted auxiliary
losses 1.5 times on 2 replicas (measured; the gradients stayed right because each replica's tape
only sees its own ops). This mixin keeps each thread's losses apart; single-threaded use (one device,
JAX, PyTorch) is unchanged, and JAX's stateless scopes take Keras's own path.
"""

import threading

from keras.src import backend, tree


class ReplicaLocalLosses:
    """Mixin for a `keras.layers.Layer`: its own `add_loss` losses are stored per thread."""

    def _thread_losses(self):
        local = self.__dict__.get("_keras_moe_thread_losses")
        if local is None:
            local = threading.local()
            object.__setattr__(self, "_keras_moe_thread_losses", local)  # untracked by Keras
        if not hasattr(local, "losses"):
            local.losses = []
        return local.losses

    def add_loss(self, loss):
        if backend.in_stateless_scope():
            return super().add_loss(loss)
        losses = tree.flatten(loss)
        for x in losses:
            if not backend.is_tensor(x):
                raise ValueError(f"`add_loss()` takes tensors computed in `call()`. Received: {x!r}")
        self._thread_losses().extend(losses)

    def _get_own_losses(self):
        if backend.in_stateless_scope():
            return super()._get_own_losses()
        return self._thread_losses()[:]

    def _clear_losses(self):
        super()._clear_losses()
        self._thread_losses().clear()
