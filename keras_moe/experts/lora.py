"""Low-rank adapters per expert (LoRA, Hu et al. 2021) for any class with `ExpertMath`.

Axis letters: `e` experts, `i` kernel input width, `o` kernel output width, `r` rank.

`enable_lora(rank)` freezes the expert weights and gives every kernel of every expert its own
pair `A [e, i, r]` (random) and `B [e, r, o]` (zeros), so at first the experts compute exactly as
before; the experts then use `W + (alpha / r) A B` (`expert_kernel`), as Keras's `Dense.enable_lora`
does for one kernel. Only the adapters train. `merge_lora()` folds the update into the frozen
kernels and zeroes `B`: the outputs do not change and the adapters are inert again.

keras-hub's `backbone.enable_lora(rank)` calls `enable_lora` on layers by name; keras-moe's
backbones and the sparse keras-hub backbones of `keras_moe.hub` add their expert banks to those
names (`default_lora_layer_names`).
"""

import keras
from keras import ops

from keras_moe.utils.validation import check_positive_int


class ExpertLoRA:
    """Mixin placed before `ExpertMath`: LoRA adapters per expert for each kernel."""

    lora_rank = None
    lora_alpha = None
    lora_enabled = False

    def _lora_names(self):
        return self.expert_in_names() + ("out",)

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        """Adds per-expert adapters of rank `rank` to every kernel and freezes the expert weights."""
        check_positive_int("rank", rank)
        if not self.built:
            raise ValueError(f"Cannot enable LoRA on {self.name!r} before it is built.")
        if self.lora_enabled:
            raise ValueError(f"LoRA is already enabled on {self.name!r} (rank {self.lora_rank}); it can be enabled once.")
        self._tracker.unlock()  # new state on a built layer, as Keras's own Dense.enable_lora does
        try:
            for name in self._lora_names():
                experts, width_in, width_out = self.base_kernel(name).shape
                setattr(self, f"lora_{name}_a", self.add_weight(
                    name=f"lora_{name}_a", shape=(experts, width_in, rank), initializer=keras.initializers.get(a_initializer)))
                setattr(self, f"lora_{name}_b", self.add_weight(
                    name=f"lora_{name}_b", shape=(experts, rank, width_out), initializer=keras.initializers.get(b_initializer)))
        finally:
            self._tracker.lock()
        self.lora_rank = rank
        self.lora_alpha = float(lora_alpha or rank)
        self.lora_enabled = True
        for variable in self.lora_base_variables():
            variable.trainable = False

    def lora_base_variables(self):
        """The expert weights LoRA freezes (kernels, biases, output scale)."""
        adapters = {id(v) for v in self.lora_variables().values()}
        return [v for v in self.weights if id(v) not in adapters]

    def lora_variables(self):
        """`{"lora_<kernel>_a" / "_b": variable}`; empty before `enable_lora`."""
        if not self.lora_enabled:
            return {}
        return {f"lora_{name}_{part}": getattr(self, f"lora_{name}_{part}") for name in self._lora_names() for part in "ab"}

    def expert_kernel(self, name):
        if not self.lora_enabled:
            return self.base_kernel(name)
        kernel = ops.convert_to_tensor(self.base_kernel(name))  # read in the layer's compute dtype
        a, b = getattr(self, f"lora_{name}_a"), getattr(self, f"lora_{name}_b")
        update = ops.einsum("eir,ero->eio", a, b) * (self.lora_alpha / self.lora_rank)
        return kernel + ops.cast(update, kernel.dtype)

    def merge_lora(self):
        """Folds the adapters into the expert kernels (`W <- W + (alpha / r) A B`) and zeroes `B`."""
        if not self.lora_enabled:
            raise ValueError(f"LoRA is not enabled on {self.name!r}: nothing to merge.")
        for name in self._lora_names():
            merged = self.expert_kernel(name)
            self.base_kernel(name).assign(merged)
            b = getattr(self, f"lora_{name}_b")
            b.assign(ops.zeros(b.shape, b.dtype))
