"""Routing figures of a trained model: the expert load per MoE layer, and its heatmap."""

import keras
import numpy as np

from keras_moe.layers.search import moe_layers
from keras_moe.training.atomic import replacing


def expert_load(model, dataset, steps=8):
    """`{layer name: [share of assignments per expert]}` measured on `steps` batches of `dataset`.

    The model is called eagerly, outside `fit`, so this works on every backend (on JAX, `fit`
    cannot update sublayer metrics).
    """
    layers = moe_layers(model)
    for layer in layers:
        layer.routing_stats.reset_state()
    for batch in dataset.take(steps):
        inputs = batch[0] if isinstance(batch, tuple) else batch
        preprocessor = getattr(model, "preprocessor", None)
        if preprocessor is not None and not isinstance(inputs, dict):
            inputs = preprocessor(inputs)
            inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        model(inputs, training=False)
    return {layer.name: np.asarray(keras.ops.convert_to_numpy(layer.routing_stats.expert_load())).tolist() for layer in layers}


def plot_expert_load(load, path, title):
    """A heatmap, one row per MoE layer, one column per expert; colour = share of assignments."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(load)
    matrix = np.array([load[n] for n in names])
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * matrix.shape[1] + 2), 0.5 * len(names) + 1.6))
    image = ax.imshow(matrix, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("expert")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of routed tokens (uniform = %.3f)" % (1 / matrix.shape[1]))
    fig.tight_layout()
    with replacing(path) as temporary:
        fig.savefig(temporary, dpi=100)
    plt.close(fig)
