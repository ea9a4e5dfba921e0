"""LoRA on backbones whose expert banks have adapters per expert (`keras_moe.experts.lora`).

keras-hub's `Backbone.enable_lora(rank)` enables LoRA on the layers named by
`default_lora_layer_names()`; its `save_lora_weights` / `load_lora_weights` know one kernel per
layer (`lora_kernel_a`, `lora_kernel_b`). This mixin adds the expert banks to the targets and saves
and loads every adapter of each layer (an expert bank has one pair per kernel), in keras-hub's
file layout (`<name>.lora.h5`, one group per enabled layer).
"""

import keras


def _adapters(layer):
    """`{variable name: variable}` of a LoRA-enabled layer: an expert bank's pairs, or Dense's pair."""
    if hasattr(layer, "lora_variables"):
        return layer.lora_variables()
    return {"lora_kernel_a": layer.lora_kernel_a, "lora_kernel_b": layer.lora_kernel_b}


class ExpertLoRABackboneMixin:
    """For backbones (keras-hub `Backbone` subclasses): expert banks join the LoRA targets."""

    expert_layer_names = ("experts",)

    def default_lora_layer_names(self):
        return list(super().default_lora_layer_names()) + list(self.expert_layer_names)

    def _lora_layers(self):
        layers = [layer for layer in self._flatten_layers(include_self=False) if layer.weights]
        if not getattr(self, "_lora_enabled_layers", []):
            raise ValueError("There are no LoRA-enabled layers in this model; call `.enable_lora(rank)` first.")
        return {index: layers[index] for index in self._lora_enabled_layers}

    def save_lora_weights(self, filepath):
        if not str(filepath).endswith(".lora.h5"):
            raise ValueError(f"The filename must end in `.lora.h5`. Received: filepath={filepath}")
        layers = self._lora_layers()
        store = keras.src.saving.saving_lib.H5IOStore(filepath, mode="w")
        store.make("lora")["rank"] = self._lora_rank
        for index, layer in layers.items():
            inner = store.make(f"lora/{index}")
            for name, variable in _adapters(layer).items():
                inner[name] = variable
        store.close()

    def load_lora_weights(self, filepath):
        store = keras.src.saving.saving_lib.H5IOStore(filepath, mode="r")
        try:
            rank = int(store.get("lora")["rank"][()])
            if not getattr(self, "_lora_enabled_layers", []):
                self.enable_lora(rank)
            elif self._lora_rank != rank:
                raise ValueError(f"The LoRA rank in {filepath!r} is {rank}; this model was enabled with rank {self._lora_rank}.")
            for index, layer in self._lora_layers().items():
                saved = store.get(f"lora/{index}")
                for name, variable in _adapters(layer).items():
                    variable.assign(saved[name])
        finally:
            store.close()
