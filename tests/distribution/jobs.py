"""Distributed jobs run in fresh subprocesses (device set-up must precede TensorFlow/JAX start-up).

    python -m tests.distribution.jobs <job> [args]    # prints one JSON line last

Each job trains the tiny MoE LM (`model=moe_lm_tiny`, dropless, load-balancing and z-loss on) on fixed
text batches, once per setting, and reports per-step logs and the largest weight differences.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

STEPS = 3
BATCH = 8
LINES = [
    "To be, or not to be, that is the question:",
    "Whether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune,",
    "Or to take arms against a sea of troubles",
    "And by opposing end them.",  # shorter than the window: padding (masked everywhere)
    "To die-to sleep, no more; and by a sleep to say we end",
    "The heart-ache and the thousand natural shocks",
    "That flesh is heir to: 'tis a consummation",
]


def overrides(**extra):
    base = {"model": "moe_lm_tiny", "data.sequence_length": 32, "data.batch_size": BATCH, "trainer": "smoke",
            "model.backbone.router.config.load_balancing_loss_weight": 0.1,  # large, so a wrong aux gradient shows
            "model.backbone.router.config.router_z_loss_weight": 0.01}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def text_batches(steps=STEPS, skip=0):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    lines = [" ".join(rng.permutation(LINES)[: 1 + i % 3]) for i in range(BATCH * (steps + skip))]
    return tf.data.Dataset.from_tensor_slices(lines).batch(BATCH).skip(skip)


class StepLogs:
    """Keras callback recording every step's logs (`fit` logs are running means over the epoch)."""

    def __new__(cls):
        import keras

        class _Logs(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.steps = []

            def on_epoch_end(self, epoch, logs=None):
                self.steps.append({k: float(v) for k, v in (logs or {}).items()})

        return _Logs()


def weights(model):
    return [np.asarray(w) for w in model.get_weights()]


def max_diff(a, b):
    return float(max(np.max(np.abs(x - y)) for x, y in zip(a, b)))


def fit(model, steps=STEPS, skip=0):
    logs = StepLogs()
    model.fit(text_batches(steps, skip), epochs=steps, steps_per_epoch=1, verbose=0, callbacks=[logs])
    return logs.steps


def train(strategy, cfg):
    import keras

    from keras_moe.training.building import build_model

    keras.utils.set_random_seed(0)
    model = build_model(cfg, strategy)
    return model, fit(model)


def log_diff(a, b):
    """Largest |a - b| per log key over the steps."""
    return {k: max(abs(x[k] - y[k]) for x, y in zip(a, b)) for k in a[0]}


def job_mirrored_parity():
    """Single device vs MirroredStrategy on 2 logical CPUs; then with per-replica (local) statistics."""
    from keras_moe.training import strategies
    from keras_moe.training.config import compose_config

    mirrored = strategies.mirrored_strategy(cpu_devices=2)
    cfg = compose_config(overrides())
    single_model, single_logs = train(strategies.default_strategy(), cfg)
    mirrored_model, mirrored_logs = train(mirrored, cfg)
    result = {"replicas": mirrored.num_replicas_in_sync, "single_logs": single_logs, "mirrored_logs": mirrored_logs,
              "log_diff": log_diff(single_logs, mirrored_logs),
              "weight_diff": max_diff(weights(single_model), weights(mirrored_model))}
    # The same run with every cross-replica sum switched off: what the global statistics buy.
    from keras_moe.losses import auxiliary
    from keras_moe.metrics import routing_stats

    auxiliary.cross_replica_sum = routing_stats.cross_replica_sum = lambda value: value
    local_model, local_logs = train(mirrored, cfg)
    result["local_stats_log_diff"] = log_diff(single_logs, local_logs)
    result["local_stats_weight_diff"] = max_diff(weights(single_model), weights(local_model))
    return result


def job_mirrored_sigmoid():
    """The DeepSeek-V3 sigmoid router under MirroredStrategy: its bias (a non-trainable weight moved in
    the forward pass from the global expert load) must match one device."""
    from keras_moe.training import strategies
    from keras_moe.training.config import compose_config

    mirrored = strategies.mirrored_strategy(cpu_devices=2)  # before any TensorFlow op
    cfg = compose_config(["model=moe_lm_tiny", "data.sequence_length=32", f"data.batch_size={BATCH}", "trainer=smoke",
                          "model/router=sigmoid"])
    single_model, single_logs = train(strategies.default_strategy(), cfg)
    mirrored_model, mirrored_logs = train(mirrored, cfg)
    bias = [np.asarray(w) for w in single_model.weights if "expert_bias" in w.path]
    return {"weight_diff": max_diff(weights(single_model), weights(mirrored_model)),
            "log_diff": log_diff(single_logs, mirrored_logs),
            "bias_moved": float(max(np.abs(b).max() for b in bias)) if bias else 0.0}


def job_checkpoints():
    """2 steps under one strategy, `save_weights` (model + optimizer), resume 2 steps under the other:
    equal to 4 steps on one device."""
    import keras

    from keras_moe.training import strategies
    from keras_moe.training.building import build_model
    from keras_moe.training.config import compose_config

    mirrored, default = strategies.mirrored_strategy(cpu_devices=2), strategies.default_strategy()
    cfg = compose_config(overrides())
    keras.utils.set_random_seed(0)
    reference = build_model(cfg, default)
    fit(reference, steps=4)
    result = {}
    path = os.path.join(sys.argv[2], "run.weights.h5")
    for first, second, name in ((mirrored, default, "mirrored_to_default"), (default, mirrored, "default_to_mirrored")):
        keras.utils.set_random_seed(0)
        model = build_model(cfg, first)
        fit(model, steps=2)
        model.save_weights(path)
        keras.utils.set_random_seed(1)  # different initial weights: everything must come from the file
        resumed = build_model(cfg, second)
        with strategies.strategy_scope(second):
            resumed.optimizer.build(resumed.trainable_variables)
        resumed.load_weights(path)
        loaded = {"weights": max_diff(weights(model), weights(resumed)),
                  "optimizer": max_diff([np.asarray(v) for v in model.optimizer.variables],
                                        [np.asarray(v) for v in resumed.optimizer.variables])}
        fit(resumed, steps=2, skip=2)
        result[name] = {"load_diff": loaded, "step": int(resumed.optimizer.iterations.numpy()),
                        "weight_diff_vs_4_single_steps": max_diff(weights(reference), weights(resumed)),
                        "replicas_before": strategies.batch_splits(first), "replicas_after": strategies.batch_splits(second)}
    return result


def job_expert_parallel():
    """JAX, 4 virtual CPU devices: unsharded vs (batch, expert) meshes: outputs, one step, shard shapes."""
    import keras

    from keras_moe.distribution import expert_parallel_distribution
    from keras_moe.models import MoETransformerBackbone

    config = dict(vocabulary_size=64, num_layers=2, num_heads=2, num_kv_heads=1, hidden_dim=16, intermediate_dim=8,
                  num_experts=8, dispatch="capacity")
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(0, 64, (8, 12)).astype("int32"), "padding_mask": np.ones((8, 12), "bool")}
    y = rng.standard_normal((8, 12, 16)).astype("float32")

    def run(distribution, initial=None):
        keras.distribution.set_distribution(distribution)
        keras.utils.set_random_seed(0)
        model = MoETransformerBackbone(**config)
        if initial is not None:
            model.set_weights(initial)
        start = [np.asarray(w) for w in model.get_weights()]
        outputs = np.asarray(model(x, training=False))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
        return model, start, outputs, loss

    reference, start, outputs, loss = run(None)
    result = {"devices": len(keras.distribution.list_devices())}
    for batch, expert in ((1, 4), (2, 2)):
        model, _, sharded_outputs, sharded_loss = run(expert_parallel_distribution(8, expert, batch), start)
        banks = [v for v in model.weights if v.path.endswith(("experts/in_kernel", "experts/out_kernel"))
                 and "shared" not in v.path]
        shards = {v.path: sorted({tuple(s.data.shape) for s in v.value.addressable_shards}) for v in banks}
        devices = {v.path: len({s.device for s in v.value.addressable_shards}) for v in banks}
        result[f"mesh_{batch}x{expert}"] = {
            "output_diff": float(np.max(np.abs(outputs - sharded_outputs))),
            "loss_diff": abs(loss - sharded_loss),
            "weight_diff_after_step": max_diff(weights(reference), weights(model)),
            "shard_shapes": {k: [list(s) for s in v] for k, v in shards.items()},
            "full_shapes": {v.path: list(v.shape) for v in banks},
            "devices_per_bank": devices,
        }
    keras.distribution.set_distribution(None)
    return result


JOBS = {"mirrored_parity": job_mirrored_parity, "mirrored_sigmoid": job_mirrored_sigmoid, "checkpoints": job_checkpoints,
        "expert_parallel": job_expert_parallel}

if __name__ == "__main__":
    print(json.dumps(JOBS[sys.argv[1]]()))
