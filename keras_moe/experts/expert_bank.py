"""Experts with weights stacked along an expert axis.

Axis letters: `e` experts, `h` hidden, `f` expert FFN (`2f` for fused gate/up projections).
"""

import keras

from keras_moe.experts import activations
from keras_moe.experts.expert_math import ExpertMath, check_gate_up_layout
from keras_moe.experts.lora import ExpertLoRA
from keras_moe.utils.validation import check_bool, check_positive_int


@keras.saving.register_keras_serializable(package="keras_moe")
class ExpertBank(ExpertLoRA, ExpertMath, keras.layers.Layer):
    """`num_experts` feed-forward experts computed together (see `ExpertMath` for the four paths).

    Weights: `in_kernel [e, h, f]` (`[e, h, 2f]` for gated activations, `gate_up_layout` "fused"
    or "interleaved"), or `gate_kernel` and `up_kernel [e, h, f]` ("separate"); `out_kernel
    [e, f, h]`; optional biases (`use_bias`) and a per-expert output scale `output_scale [e]`
    (`use_output_scale`, Gemma 4's per-expert scale). Fine-grained experts (DeepSeekMoE) are many
    experts with a small `intermediate_dim`.

    Args:
        num_experts: int `e`.
        intermediate_dim: int `f`, FFN width of each expert.
        activation: a name from `keras_moe.experts.activations.ACTIVATIONS` (`"swiglu"`, Mixtral's
            default; `"geglu_tanh"`, Gemma's; `"clamped_swiglu"`, GPT-OSS's) or a dict with
            `name` and parameters.
        gate_up_layout: `"fused"`, `"interleaved"` or `"separate"` (gated activations only).
        use_bias: bool.
        use_output_scale: bool, a learned scale per expert on its output (initialised to 1).
        kernel_initializer: initializer of the kernels.
        lora_rank: optional int; build with per-expert LoRA adapters of this rank (`enable_lora`),
            as Keras's `Dense(lora_rank=...)`, so a saved LoRA model loads back with its adapters.
        lora_alpha: optional float, the LoRA scale numerator (default: `lora_rank`).

    Example:

    ```python
    bank = keras_moe.experts.ExpertBank(num_experts=4, intermediate_dim=16)
    assert tuple(bank(np.ones((4, 3, 8), "float32")).shape) == (4, 3, 8)
    ```
    """

    def __init__(
        self,
        num_experts,
        intermediate_dim,
        activation="swiglu",
        gate_up_layout="fused",
        use_bias=False,
        use_output_scale=False,
        kernel_initializer="glorot_uniform",
        lora_rank=None,
        lora_alpha=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = check_positive_int("num_experts", num_experts)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.expert_activation = activations.get(activation)
        self.activation = self.expert_activation.config
        self.gate_up_layout = check_gate_up_layout(gate_up_layout, self.expert_activation)
        self.use_bias = check_bool("use_bias", use_bias)
        self.use_output_scale = check_bool("use_output_scale", use_output_scale)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.lora_rank = None if lora_rank is None else check_positive_int("lora_rank", lora_rank)
        self.lora_alpha = lora_alpha

    def _shapes(self, hidden_dim):
        """`{weight name: shape}` of the kernels and biases for inputs of width `hidden_dim`."""
        e, f = self.num_experts, self.intermediate_dim
        width = 2 * f if self.expert_in_names() == ("in",) and self.expert_activation.gated else f
        kernels = {name: (e, hidden_dim, width) for name in self.expert_in_names()}
        kernels["out"] = (e, f, hidden_dim)
        return kernels

    def parameter_count(self, hidden_dim):
        """Weights created for inputs of width `hidden_dim` (without building)."""
        total = 0
        for shape in self._shapes(hidden_dim).values():
            total += shape[0] * shape[1] * shape[2] + (shape[0] * shape[2] if self.use_bias else 0)
        return total + (self.num_experts if self.use_output_scale else 0)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim is None:
            raise ValueError(f"The last axis of the expert input must be known. Received shape {input_shape}")
        self.hidden_dim = hidden_dim
        for name, shape in self._shapes(hidden_dim).items():
            setattr(self, f"{name}_kernel", self.add_weight(name=f"{name}_kernel", shape=shape, initializer=self.kernel_initializer))
            if self.use_bias:
                setattr(self, f"{name}_bias", self.add_weight(name=f"{name}_bias", shape=(shape[0], shape[2]), initializer="zeros"))
        if self.use_output_scale:
            self.output_scale = self.add_weight(name="output_scale", shape=(self.num_experts,), initializer="ones")
        if self.lora_rank:
            self.built = True  # enable_lora adds the adapters to a built layer
            self.enable_lora(self.lora_rank, lora_alpha=self.lora_alpha)

    def call(self, inputs):
        """`[e, c, h] -> [e, c, h]`: each expert on its own buffer (`ExpertMath.call_buffers`)."""
        return self.call_buffers(inputs)

    def base_kernel(self, name):
        return getattr(self, f"{name}_kernel")

    def expert_bias(self, name):
        return getattr(self, f"{name}_bias") if self.use_bias else None

    def expert_output_scale(self):
        return self.output_scale if self.use_output_scale else None

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_experts": self.num_experts,
                "intermediate_dim": self.intermediate_dim,
                "activation": self.activation,
                "gate_up_layout": self.gate_up_layout,
                "use_bias": self.use_bias,
                "use_output_scale": self.use_output_scale,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "lora_rank": self.lora_rank,
                "lora_alpha": self.lora_alpha,
            }
        )
        return config
