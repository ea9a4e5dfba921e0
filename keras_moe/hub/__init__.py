"""keras-hub bridge: make keras-hub's MoE models sparse, upcycle dense models into MoE models,
fine-tune experts with LoRA.

- `sparsify(model)`: a keras-hub MoE Backbone or CausalLM computes only each token's chosen experts;
- `from_preset(preset)`: load a keras-hub preset as a sparse model;
- `upcycle(dense, num_experts)`: a dense keras-hub or keras-moe model becomes an MoE model whose
  experts start as copies of its FFN (sparse upcycling); `upcycle_from(path, num_experts)` reads
  the dense model from a run folder, a `.keras` file or a preset directory;
- `register(Family(...))`: a new keras-hub MoE family (one small file, as `keras_moe/hub/mixtral.py`);
  `register_upcycler(BackboneClass)`: a new dense source for `upcycle`.
"""

# The built-in families (each module registers its `Family`), and the keras-hub CausalLM signatures.
from keras_moe.hub import gemma4, gpt_oss, mixtral, qwen3_5_moe, qwen3_moe, qwen_moe, serving  # noqa: E402,F401
from keras_moe.hub.family import Family, SparseMoEBlock
from keras_moe.hub.registry import FAMILIES, SparseBackbone, family_of, register
from keras_moe.hub.sparsify import from_preset, sparsify
from keras_moe.hub.upcycle import register_upcycler, upcycle
from keras_moe.hub.upcycle_source import load_dense, upcycle_from
