"""LoRA on experts: `enable_lora` gives every expert its own adapters; only they train; merging keeps the
outputs; keras-hub's `backbone.enable_lora` reaches the expert banks of keras-moe and sparsified models."""

import keras
import numpy as np
import pytest

import keras_moe
import keras_moe.hub as hub
from keras_moe.experts import ExpertBank
from keras_moe.models import MoECausalLM, MoETransformerBackbone
from tests.conftest import random_tokens, to_numpy
from tests.hub.tiny import backbone_inputs, causal_lm


@pytest.mark.parametrize("layout", ["fused", "separate", "interleaved"])
def test_adapters_start_inert_and_merge_without_changing_outputs(layout):
    bank = ExpertBank(4, 6, gate_up_layout=layout, use_bias=True)
    bank.build((None, 8))
    x = random_tokens(4, 5, 8)
    before = to_numpy(bank(x))
    bank.enable_lora(2)
    np.testing.assert_allclose(to_numpy(bank(x)), before, atol=1e-6)  # B starts at zero
    assert {v.name for v in bank.trainable_weights} == {f"lora_{n}_{p}" for n in bank.expert_in_names() + ("out",) for p in "ab"}
    for name in bank.expert_in_names() + ("out",):
        b = getattr(bank, f"lora_{name}_b")
        b.assign(np.random.default_rng(0).normal(0, 0.1, b.shape).astype("float32"))
    adapted = to_numpy(bank(x))
    assert not np.allclose(adapted, before, atol=1e-4)
    np.testing.assert_allclose(to_numpy(bank.call_all(x[0])), to_numpy(bank.call_all(x[0])), atol=0)
    bank.merge_lora()
    np.testing.assert_allclose(to_numpy(bank(x)), adapted, atol=1e-5)  # folded into the kernels
    for name in bank.expert_in_names() + ("out",):
        assert not np.any(to_numpy(getattr(bank, f"lora_{name}_b")))


def test_lora_rank_in_the_config_rebuilds_the_adapters_on_load(tmp_path):
    inputs = keras.Input((3, 8))
    layer = keras_moe.MoELayer(4, 8, name="moe")
    model = keras.Model(inputs, layer(inputs))
    layer.experts.enable_lora(2)
    layer.experts.lora_out_b.assign(np.full(layer.experts.lora_out_b.shape, 0.1, "float32"))
    x = random_tokens(2, 3, 8)
    expected = to_numpy(model(x))
    model.save(tmp_path / "lora.keras")
    restored = keras.models.load_model(tmp_path / "lora.keras")
    assert restored.get_layer("moe").experts.lora_rank == 2
    np.testing.assert_allclose(to_numpy(restored(x)), expected, atol=1e-6)


def _fit_and_compare(model, x, y, expert_banks):
    frozen = {id(v): to_numpy(v).copy() for bank in expert_banks for v in bank.lora_base_variables()}
    adapters = {id(v): to_numpy(v).copy() for bank in expert_banks for v in bank.lora_variables().values()}
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    for bank in expert_banks:
        for v in bank.lora_base_variables():
            np.testing.assert_array_equal(to_numpy(v), frozen[id(v)], err_msg=v.path)  # base experts never move
        assert any(not np.array_equal(to_numpy(v), adapters[id(v)]) for v in bank.lora_variables().values())


def test_keras_moe_backbone_enable_lora_trains_only_the_adapters():
    backbone = MoETransformerBackbone(vocabulary_size=32, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=16,
                                      num_experts=4, dispatch="dropless")
    lm = MoECausalLM(backbone)
    backbone.enable_lora(rank=2)
    banks = [layer.experts for layer in backbone.moe_layers]
    assert all(bank.lora_enabled for bank in banks)
    assert all(v.trainable is False for bank in banks for v in bank.lora_base_variables())
    x = {"token_ids": np.random.default_rng(0).integers(1, 32, (4, 6)).astype("int32"), "padding_mask": np.ones((4, 6), "int32")}
    _fit_and_compare(lm, x, x["token_ids"], banks)


def test_sparsified_keras_hub_model_gets_expert_adapters_that_save_and_load(tmp_path):
    lm = hub.sparsify(causal_lm("mixtral"))
    lm.backbone.enable_lora(rank=2)
    banks = [layer for layer in lm.backbone._flatten_layers() if hasattr(layer, "lora_variables") and layer.lora_enabled]
    assert len(banks) == 2  # one expert bank per decoder, besides keras-hub's query/value adapters
    x = backbone_inputs("mixtral")
    _fit_and_compare(lm, x, x["token_ids"], banks)
    expected = to_numpy(lm(x))
    lm.backbone.save_lora_weights(str(tmp_path / "adapters.lora.h5"))
    fresh = hub.sparsify(causal_lm("mixtral"))  # the same base weights (same seed)
    fresh.backbone.load_lora_weights(str(tmp_path / "adapters.lora.h5"))
    np.testing.assert_allclose(to_numpy(fresh(x)), expected, atol=1e-5)
