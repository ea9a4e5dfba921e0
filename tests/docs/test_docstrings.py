"""Every ```python example in a keras_moe docstring runs, on each backend (keras-hub's docstring tests
in spirit), so examples cannot rot. A block starting with `# backends: jax` runs only there."""

import importlib
import inspect
import pkgutil
import re

import keras
import keras_hub
import numpy as np
import pytest

import keras_moe

BLOCK = re.compile(r"```python\n(.*?)```", re.S)
BACKENDS = re.compile(r"^# backends: (.+)$", re.M)


def _members(module):
    """The module, its own classes and functions, and the methods those classes define."""
    yield module.__name__, module
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__ or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        yield f"{module.__name__}.{name}", obj
        if inspect.isclass(obj):
            for attribute, member in vars(obj).items():
                if inspect.isfunction(member) and member.__doc__:
                    yield f"{module.__name__}.{name}.{attribute}", member


def examples():
    found = []
    for info in pkgutil.walk_packages(keras_moe.__path__, "keras_moe."):
        module = importlib.import_module(info.name)
        for name, obj in _members(module):
            doc = inspect.getdoc(obj) if obj is not module else (module.__doc__ or "")
            for i, block in enumerate(BLOCK.findall(doc or "")):
                found.append(pytest.param(module, block, id=f"{name}[{i}]"))
    return found


EXAMPLES = examples()


def test_the_examples_are_found():
    names = {param.id.rsplit("[", 1)[0] for param in EXAMPLES}
    assert {"keras_moe.layers.moe_layer.MoELayer", "keras_moe.hub.sparsify.sparsify", "keras_moe.dispatch.choose.auto_mode",
            "keras_moe.distribution.expert_parallel"} <= names
    assert len(EXAMPLES) >= 20


@pytest.mark.parametrize("module, block", EXAMPLES)
def test_docstring_example_runs(module, block):
    wanted = BACKENDS.search(block)
    if wanted and keras.backend.backend() not in wanted.group(1).split():
        pytest.skip(f"example for {wanted.group(1)}")
    namespace = {**vars(module), "keras": keras, "keras_hub": keras_hub, "keras_moe": keras_moe, "np": np}
    exec(compile(block, f"<docstring of {module.__name__}>", "exec"), namespace)
