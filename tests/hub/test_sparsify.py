"""Every supported keras-hub MoE family, sparsified: the same logits, auxiliary losses and greedy
generations as keras-hub's dense blocks, through a preset saved and loaded offline, on each backend."""

import os
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest

import keras_moe.hub as hub
from tests.hub.tiny import FAMILIES, backbone_inputs, causal_lm

ATOL = 1e-5


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def training_losses(model, x):
    model(x, training=True)
    return [float(numpy(loss)) for loss in model.losses]


def greedy(model, x, length=8, jit_compile="auto"):
    model.compile(sampler="greedy", jit_compile=jit_compile)
    if jit_compile is True:
        assert model.jit_compile is True
    prompt = {"token_ids": np.where(np.arange(length) < 3, x["token_ids"][:, :length], 0).astype("int32"),
              "padding_mask": np.broadcast_to(np.arange(length) < 3, (2, length)).astype("int32")}
    if "position_ids" in x:
        prompt["position_ids"] = x["position_ids"][:, :length]
    return numpy(model.generate(prompt, max_length=length, stop_token_ids=None)["token_ids"])


@pytest.fixture(scope="module", params=FAMILIES)
def dense_and_sparse(request, tmp_path_factory):
    """A tiny keras-hub CausalLM of the family, its preset, and the sparse model loaded from it."""
    family = request.param
    dense = causal_lm(family)
    x = backbone_inputs(family)
    path = str(tmp_path_factory.mktemp(family))
    dense.save_to_preset(path)
    sparse = hub.from_preset(path, task="causal_lm")
    return family, dense, sparse, x, path


def test_logits_losses_and_generation_equal_keras_hubs(dense_and_sparse):
    family, dense, sparse, x, _ = dense_and_sparse
    assert isinstance(sparse, type(dense)) and type(sparse) is not type(dense)
    assert isinstance(sparse.backbone, type(dense.backbone))
    real = x["padding_mask"] > 0
    np.testing.assert_allclose(numpy(sparse(x))[real], numpy(dense(x))[real], atol=ATOL, rtol=0)
    np.testing.assert_allclose(training_losses(sparse, x), training_losses(dense, x), rtol=1e-5, atol=1e-7)
    if family not in ("gpt_oss", "gemma4"):  # keras-hub gives these two no auxiliary loss
        assert training_losses(sparse, x)
    np.testing.assert_array_equal(greedy(sparse, x), greedy(dense, x))


def test_the_sparse_blocks_compute_through_keras_moe_dispatch(dense_and_sparse):
    family, dense, sparse, x, _ = dense_and_sparse
    real = x["padding_mask"] > 0
    hub.sparsify(sparse, dispatch="capacity", eval_capacity_factor=0.1, min_expert_capacity=1)  # forces drops
    dropped = numpy(sparse(x))
    hub.sparsify(sparse, dispatch="blocked")
    blocked = numpy(sparse(x))
    hub.sparsify(sparse)  # back to dropless
    assert not np.allclose(dropped[real], numpy(dense(x))[real], atol=1e-3)
    np.testing.assert_allclose(blocked[real], numpy(dense(x))[real], atol=ATOL, rtol=0)


def test_a_sparse_preset_and_keras_file_load_back_sparse(dense_and_sparse, tmp_path):
    family, _, sparse, x, _ = dense_and_sparse
    expected = numpy(sparse(x))
    sparse.save_to_preset(str(tmp_path / "preset"))
    restored = keras_hub.models.Backbone.from_preset(str(tmp_path / "preset"))
    assert type(restored) is type(sparse.backbone) and restored.sparse_moe == sparse.backbone.sparse_moe
    np.testing.assert_allclose(numpy(restored.token_embedding(restored(x), reverse=True)) if family != "gemma4" else
                               numpy(hub.from_preset(str(tmp_path / "preset"), task="causal_lm")(x)), expected, atol=1e-6)
    sparse.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded) is type(sparse)
    np.testing.assert_allclose(numpy(loaded(x)), expected, atol=1e-6)


def test_a_sparse_preset_loads_in_a_fresh_process_with_no_patch(dense_and_sparse, tmp_path):
    family, _, sparse, x, _ = dense_and_sparse
    if family != "mixtral":
        pytest.skip("one family is enough to show a fresh process needs only `import keras_moe`")
    sparse.save_to_preset(str(tmp_path / "preset"))
    np.save(tmp_path / "x.npy", x["token_ids"])
    np.save(tmp_path / "expected.npy", numpy(sparse(x)))
    code = (
        "import sys, numpy as np, keras, keras_hub, keras_moe; d = sys.argv[1]; "
        "lm = keras_hub.models.CausalLM.from_preset(d + '/preset'); "
        "ids = np.load(d + '/x.npy'); mask = np.ones_like(ids); mask[1, -3:] = 0; "
        "out = keras.ops.convert_to_numpy(lm({'token_ids': ids, 'padding_mask': mask})); "
        "assert type(lm).__name__ == 'SparseMixtralCausalLM', type(lm); "
        "print(float(np.abs(out - np.load(d + '/expected.npy')).max()))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip().splitlines()[-1]) < 1e-6


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="XLA compilation of TensorFlow's dynamic splits")
@pytest.mark.parametrize("family", ["mixtral", "qwen3_moe"])
def test_generate_compiles_with_xla_and_stays_exact(family):
    dense, sparse = causal_lm(family), hub.sparsify(causal_lm(family))
    x = backbone_inputs(family)
    expected = greedy(dense, x, jit_compile=False)
    # keras-hub's generate compiles with XLA (tf.function(jit_compile=True)): dropless runs blocked.
    np.testing.assert_array_equal(greedy(sparse, x, jit_compile=True), expected)


def test_unknown_families_and_models_without_experts_are_refused():
    llama = keras_hub.models.LlamaBackbone(vocabulary_size=16, num_layers=1, num_query_heads=2, hidden_dim=8,
                                           intermediate_dim=16, num_key_value_heads=1)
    with pytest.raises(ValueError, match="no adapter for LlamaBackbone.*MixtralBackbone.*upcycle"):
        hub.sparsify(llama)
    dense_gemma = keras_hub.models.Gemma4Backbone(vocabulary_size=64, num_layers=1, hidden_dim=16, num_key_value_heads=1,
                                                  num_query_heads=2, intermediate_dim=16, head_dim=8, image_size=16)
    with pytest.raises(ValueError, match="has no MoE block"):
        hub.sparsify(dense_gemma)
    assert type(dense_gemma) is keras_hub.models.Gemma4Backbone  # refused without changing anything
    with pytest.raises(ValueError, match="Backbone or task"):
        hub.sparsify(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="dispatch='sparse'"):
        hub.sparsify(causal_lm("mixtral"), dispatch="sparse")
    with pytest.raises(ValueError, match="Unknown sparse MoE options"):
        hub.sparsify(causal_lm("mixtral"), capacity=2)
