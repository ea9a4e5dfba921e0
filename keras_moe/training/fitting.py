"""`model.fit` for a run that may have been interrupted at any step.

The run's position is its global step `n` (optimizer steps taken). Resuming at `n`, the run fits the
rest of the interrupted epoch first (`steps_per_epoch - n % steps_per_epoch` steps, with the epoch's
running metrics restored), then the remaining epochs, each `fit` on `data.train_dataset().skip(n)`:
the batches an uninterrupted run would see next. `RunProgress` counts the steps, keeps every epoch's
logs and writes the backups, the best weights and `history.csv`.
"""

import csv
import io
import math
import os
import time

import keras

from keras_moe.training import backup as backups
from keras_moe.training.atomic import replacing, write_text_atomic
from keras_moe.training.progress import RoutingProgbar


class RunProgress(keras.callbacks.Callback):
    """Counts global steps; keeps each epoch's logs; at each epoch end (and every `backup_freq` steps when
    it is an integer) writes a backup; keeps `best.weights.h5` (lowest `val_loss`) and `history.csv`.

    Args:
        state: the restored backup state, or None for a new run.
        steps_per_epoch: int.
        output_dir: the run folder.
        backup: a `Backup`, or None (no backups).
        backup_freq: `"epoch"` or an int.
        config: the run's resolved config (saved in each backup).
        max_minutes: a training-time budget (resumed runs count their earlier time): once spent, the
            step in progress is the last; the epoch ends (validation, backup) and the run finishes as usual.
        metric_values: the interrupted epoch's running metric sums, added to the metrics after the first
            step of the resumed epoch (Keras builds some metrics in that step; every metric here keeps sums,
            `Mean`-style totals and counts and `RoutingStats`, and a + b == b + a exactly in floating point).
    """

    def __init__(self, state, steps_per_epoch, output_dir, backup=None, backup_freq="epoch", config=None,
                 metric_values=None, max_minutes=None):
        super().__init__()
        state = state or {}
        self.step = int(state.get("step", 0))
        self.history = list(state.get("history", []))
        self.best = float(state.get("best_val_loss", math.inf))
        self.seconds_before = float(state.get("train_seconds", 0.0))
        self.steps_per_epoch = steps_per_epoch
        self.output_dir = output_dir
        self.backup, self.backup_freq, self.config = backup, backup_freq, config
        self.pending_metric_values = metric_values
        self.started = time.time()
        self.max_seconds = None if max_minutes is None else 60.0 * float(max_minutes)
        self.stopped_by_budget = False

    @property
    def train_seconds(self):
        return self.seconds_before + time.time() - self.started

    def state(self):
        return {"step": self.step, "history": self.history, "best_val_loss": self.best,
                "train_seconds": self.train_seconds, "config": self.config}

    def on_train_batch_end(self, batch, logs=None):
        if self.pending_metric_values is not None:  # the interrupted epoch's running sums, after its first step
            backups.add_metric_values(self.model, self.pending_metric_values, self.backup)
            self.pending_metric_values = None
        self.step += 1
        if self.max_seconds is not None and self.train_seconds >= self.max_seconds:
            self.stopped_by_budget = True
            self.model.stop_training = True  # Keras ends the epoch (validation, on_epoch_end) after this step
        mid_epoch = self.step % self.steps_per_epoch
        if self.backup is not None and self.backup_freq != "epoch" and self.step % self.backup_freq == 0 and mid_epoch:
            self.backup.write(self.model, self.state(), backups.metric_values(self.model))

    def on_epoch_end(self, epoch, logs=None):
        logs = {key: float(value) for key, value in (logs or {}).items()}
        self.history.append(logs)
        if logs.get("val_loss", math.inf) < self.best:
            self.best = logs["val_loss"]
            with replacing(os.path.join(self.output_dir, "best.weights.h5")) as temporary:
                self.model.save_weights(temporary)
        if self.backup is not None:
            self.backup.write(self.model, self.state())
        write_history_csv(os.path.join(self.output_dir, "history.csv"), self.history)

    def history_dict(self):
        """`{metric: [value per epoch]}`, as `History.history`."""
        keys = sorted({key for logs in self.history for key in logs})
        return {key: [logs.get(key, math.nan) for logs in self.history] for key in keys}


def write_history_csv(path, history):
    """`epoch,<metric>,...`, one row per completed epoch (as Keras's CSVLogger writes it)."""
    keys = sorted({key for logs in history for key in logs})
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["epoch", *keys])
    for epoch, logs in enumerate(history):
        writer.writerow([epoch, *(logs.get(key, "") for key in keys)])
    write_text_atomic(path, text.getvalue())


def fit_run(model, data, cfg, progress, callbacks=()):
    """Fits the steps of the run that `progress.step` has not taken yet (see the module docstring)."""
    steps_per_epoch, epochs = int(cfg.trainer.steps_per_epoch), int(cfg.trainer.epochs)
    verbose = int(cfg.trainer.verbose)
    callbacks = [progress, *callbacks] + ([RoutingProgbar(epochs)] if verbose else [])
    while progress.step < epochs * steps_per_epoch:
        start = progress.step
        epoch, done = divmod(start, steps_per_epoch)
        model.fit(
            data.train_dataset().skip(start),
            initial_epoch=epoch,
            epochs=epoch + 1 if done else epochs,
            steps_per_epoch=steps_per_epoch - done,
            validation_data=data.validation_dataset(),
            validation_steps=cfg.trainer.validation_steps,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the datasets shuffle themselves, seeded
        )
        if progress.step == start or model.stop_training:
            break
