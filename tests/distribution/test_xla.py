"""XLA: the MoE LM in capacity mode trains with `jit_compile=True` (static shapes, no host round trips)."""

import numpy as np

from keras_moe.training.building import build_model
from keras_moe.training.config import compose_config

OVERRIDES = ["model=moe_lm_tiny", "model.backbone.dispatch=capacity", "model.backbone.num_layers=1",
             "data.sequence_length=16", "data.batch_size=4", "trainer=smoke", "optimizer=adam"]


def train_two_steps(jit_compile):
    import keras

    keras.utils.set_random_seed(0)
    model = build_model(compose_config(OVERRIDES + [f"trainer.jit_compile={str(jit_compile).lower()}"]))
    assert model.jit_compile == jit_compile
    texts = ["To be, or not to be, that is the question", "Whether 'tis nobler in the mind"] * 4
    history = model.fit(x=texts[:4] * 2, batch_size=4, epochs=1, shuffle=False, verbose=0)
    return history.history["loss"][0], model.get_weights()


def test_capacity_mode_trains_under_jit_compile():
    jit_loss, jit_weights = train_two_steps(True)
    loss, weights = train_two_steps(False)
    assert np.isfinite(jit_loss)
    assert abs(jit_loss - loss) < 1e-4  # XLA fuses differently: float32 rounding only
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(jit_weights, weights)) < 1e-4
