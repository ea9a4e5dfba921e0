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


@pytest.mark.parametrize("document", ["README.md", "docs/routers.md"])
def test_the_python_in_the_docs_runs(document, monkeypatch):
    from keras_moe import routing

    monkeypatch.setattr(routing.registry, "ROUTERS", dict(routing.ROUTERS))  # the guide registers a router
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / document).read_text(), flags=re.DOTALL)
    assert blocks
    namespace = {}
    for block in blocks:
        exec(compile(block, f"{document} (python block)", "exec"), namespace)  # noqa: S102 (our own docs)
