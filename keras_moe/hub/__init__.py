"""keras-hub bridge: make keras-hub's MoE models sparse, upcycle dense models into MoE models,
fine-tune experts with LoRA.

- `sparsify(model)`: a keras-hub MoE Backbone or CausalLM computes only each token's chosen experts;
- `from_preset(preset)`: load a keras-hub preset as a sparse model;
- `register(Family(...))`: a new keras-hub MoE family (one small file, as `keras_moe/hub/mixtral.py`).
"""

from keras_moe.hub.family import Family, SparseMoEBlock
from keras_moe.hub.registry import FAMILIES, SparseBackbone, family_of, register
from keras_moe.hub.sparsify import from_preset, sparsify

# The built-in families (each module registers its `Family`).
from keras_moe.hub import gemma4, gpt_oss, mixtral, qwen3_5_moe, qwen3_moe, qwen_moe  # noqa: E402,F401
