"""Per-modality routing analysis: which experts receive the image tokens and which the text tokens.

For every `ModalityMoELayer` of a model, measured eagerly on a few batches (so it is real on every
backend): per modality, the share of that modality's routed assignments each expert receives
(each row sums to 1), the share of each expert's assignments that are image tokens, and the
layer's modality purity (share of assignments that go to an expert whose majority modality is the
token's own; 1.0 = experts fully specialised by modality). For a `MultimodalMixtureClassifier`,
the mean gate weight of each expert model, overall and per true class.

`plot_modality_routing` draws one row per MoE layer: a heatmap of the per-modality shares (rows
text and image, one column per expert) and a bar per expert of its image-token fraction, with the
image tokens' overall share as a dashed line. Bars near 0 or 1 are experts specialised by modality.
"""

import os

import keras
import numpy as np

from keras_moe.layers.modality_moe_layer import ModalityMoELayer
from keras_moe.layers.search import moe_layers
from keras_moe.models.multimodal.classifiers import INPUT_OF_MODALITY, MultimodalMixtureClassifier, MultimodalMoEClassifier

MODALITY_NAMES = ("text", "image")  # modality ids 0 and 1


def modality_layers(model):
    return moe_layers(model, ModalityMoELayer)


def is_multimodal(model):
    return isinstance(model, (MultimodalMoEClassifier, MultimodalMixtureClassifier))


def model_inputs(model, dataset):
    """`dataset` of raw `(x, y)` mapped through the model's preprocessor (when it has one) to `(features, y)`."""
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        return dataset
    return dataset.map(lambda x, y: preprocessor(x, y))


def _batches(model, dataset, steps):
    for batch in model_inputs(model, dataset).take(steps):
        yield batch if isinstance(batch, tuple) else (batch, None)


def modality_routing(model, dataset, steps=8):
    """`{layer name: {"text": [e], "image": [e], "image_fraction": [e], "modality_purity": float}}`."""
    layers = modality_layers(model)
    if not layers:
        return {}
    for layer in layers:
        layer.modality_stats.reset_state()
    for features, _ in _batches(model, dataset, steps):
        model(features, training=False)
    analysis = {}
    for layer in layers:
        counts = np.asarray(keras.ops.convert_to_numpy(layer.modality_stats.counts()), dtype="float64")  # [m, e]
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        per_expert = counts.sum(axis=0)
        entry = {name: shares[m].tolist() for m, name in enumerate(MODALITY_NAMES[: len(counts)])}
        entry["image_fraction"] = (counts[1] / np.maximum(per_expert, 1.0)).tolist() if len(counts) > 1 else None
        entry["image_token_share"] = float(counts[1].sum() / max(counts.sum(), 1.0)) if len(counts) > 1 else None
        entry["modality_purity"] = float(counts.max(axis=0).sum() / max(counts.sum(), 1.0))
        analysis[layer.name] = entry
    return analysis


def gate_analysis(model, dataset, class_names=None, steps=16):
    """For a `MultimodalMixtureClassifier` with a gate: `{"expert_load": {"gate": [mean weight per
    expert]}, "gate_weights_by_class": {class: [image, text]}, "gate_weight_spread": {"std", "p05",
    "p95": [per expert]} (how much the weights vary from example to example: input dependence),
    "expert_accuracy": {expert: accuracy of that expert alone}}`; `{}` for other models."""
    if getattr(model, "mixture", None) is None:
        return {}
    weights, labels, correct = [], [], {key: [] for key in model.modalities}
    for features, y in _batches(model, dataset, steps):
        weights.append(np.asarray(keras.ops.convert_to_numpy(model.gate_weights(features))))
        labels.append(np.asarray(y))
        for key in model.modalities:
            probabilities = keras.ops.convert_to_numpy(model.experts[key](features[INPUT_OF_MODALITY[key]], training=False))
            correct[key].append(np.argmax(probabilities, axis=-1) == np.asarray(y).reshape(-1))
    weights, labels = np.concatenate(weights), np.concatenate(labels)
    names = class_names or [str(i) for i in range(int(labels.max()) + 1)]
    by_class = {names[c]: weights[labels == c].mean(axis=0).tolist() for c in range(len(names)) if np.any(labels == c)}
    spread = {"std": weights.std(axis=0).tolist(), "p05": np.percentile(weights, 5, axis=0).tolist(),
              "p95": np.percentile(weights, 95, axis=0).tolist()}
    return {"expert_load": {"gate": weights.mean(axis=0).tolist()}, "gate_weights_by_class": by_class,
            "gate_weight_spread": spread, "gate_experts": list(model.modalities),
            "expert_accuracy": {key: float(np.concatenate(c).mean()) for key, c in correct.items()}}


def plot_modality_routing(analysis, path, title):
    """Writes the PNG described in the module docstring."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(analysis)
    num_experts = len(analysis[names[0]]["text"])
    fig, axes = plt.subplots(len(names), 2, figsize=(max(7, 0.9 * num_experts + 4), 2.3 * len(names) + 0.8), squeeze=False)
    for row, name in enumerate(names):
        entry = analysis[name]
        matrix = np.array([entry[m] for m in MODALITY_NAMES if m in entry])
        heat = axes[row, 0].imshow(matrix, cmap="viridis", vmin=0, aspect="auto")
        axes[row, 0].set_yticks(range(len(matrix)), labels=[m for m in MODALITY_NAMES if m in entry])
        axes[row, 0].set_xticks(range(num_experts))
        axes[row, 0].set_title(f"{name}: share of each modality's tokens", fontsize=9)
        fig.colorbar(heat, ax=axes[row, 0])
        fraction = entry.get("image_fraction") or [0.0] * num_experts
        colours = plt.get_cmap("coolwarm")(np.asarray(fraction))
        axes[row, 1].bar(range(num_experts), fraction, color=colours)
        if entry.get("image_token_share") is not None:
            axes[row, 1].axhline(entry["image_token_share"], color="black", linestyle="--", linewidth=1, label="all tokens")
            axes[row, 1].legend(loc="upper right", fontsize=7)
        axes[row, 1].set_ylim(0, 1)
        axes[row, 1].set_xticks(range(num_experts))
        axes[row, 1].set_title(f"image share of each expert's tokens (purity {entry['modality_purity']:.2f})", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("expert")
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def analyse(model, dataset, output_dir, title, class_names=None):
    """Routing analysis for `keras-moe train`: returns metrics to merge and writes
    `modality_routing.png` when the model has modality-aware MoE layers."""
    metrics = {}
    routing = modality_routing(model, dataset)
    if routing:
        metrics["modality_routing"] = routing
        plot_modality_routing(routing, os.path.join(output_dir, "modality_routing.png"), title)
    metrics.update(gate_analysis(model, dataset, class_names))
    return metrics
