"""The docs cannot rot: docs/api.md is what the docstrings give, and the Python in the README and in
docs/routers.md runs."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def make_api():
    spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_api_reference_is_up_to_date():
    assert (ROOT / "docs" / "api.md").read_text() == make_api().build(), "run `python docs/make_api.py`"


def test_the_api_reference_lists_the_public_classes_with_their_arguments():
    text = (ROOT / "docs" / "api.md").read_text()
    assert "### `keras_moe.layers.MoELayer`" in text and "Also: `keras_moe.MoELayer`" in text
    assert "- `num_experts`: int `e`." in text  # Args rendered as a list
    assert "### `keras_moe.training.train`" in text and "0x" not in text  # no memory addresses


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """The preset paths the README's keras-hub example names, as tiny local presets (no downloads here)."""
    import keras
    import keras_hub

    from tests.hub.test_export import byte_pair_tokenizer
    from tests.hub.tiny import decisive

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("presets")
    tokenizer = byte_pair_tokenizer()
    qwen = keras_hub.models.QwenMoeBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_query_heads=2, num_key_value_heads=1, hidden_dim=16,
        intermediate_dim=24, moe_intermediate_dim=12, shared_expert_intermediate_dim=20, num_experts=4, top_k=2)
    preprocessor = keras_hub.models.QwenMoeCausalLMPreprocessor(tokenizer, sequence_length=12)
    decisive(keras_hub.models.QwenMoeCausalLM(qwen, preprocessor)).save_to_preset(str(root / "qwen_moe"))
    llama = keras_hub.models.LlamaBackbone(vocabulary_size=64, num_layers=1, num_query_heads=2, hidden_dim=16,
                                           intermediate_dim=24, num_key_value_heads=1)
    llama.save_to_preset(str(root / "llama"))
    return {"path/to/qwen_moe_preset": str(root / "qwen_moe"), "path/to/llama_preset": str(root / "llama")}


@pytest.mark.parametrize("document", ["README.md", "docs/routers.md"])
def test_the_python_in_the_docs_runs(document, monkeypatch, presets):
    from keras_moe import routing

    monkeypatch.setattr(routing.registry, "ROUTERS", dict(routing.ROUTERS))  # the guide registers a router
    text = (ROOT / document).read_text()
    for name, path in presets.items():
        text = text.replace(name, path)
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    namespace = {}
    for block in blocks:
        exec(compile(block, f"{document} (python block)", "exec"), namespace)  # noqa: S102 (our own docs)
