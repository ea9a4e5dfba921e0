"""The package as a user installs it: a wheel built from this checkout, installed (not editable) in a
fresh virtual environment, run from an empty folder, where no source checkout can be found.

The fresh environment gets its dependencies from the running environment through a `.pth` file
(added after the wheel is installed, so pip sees an empty environment and installs nothing else);
what runs is the wheel's own copy of keras-moe and its configs. Building needs setuptools >= 77 in
the running environment (`--no-build-isolation`: no network); without it the test skips, unless
`KERAS_MOE_REQUIRE_WHEEL_TEST=1` (set by .ci/run) makes that a failure.
"""

import json
import os
import shutil
import site
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns(".git", ".venv", "outputs", "multirun", "saved_models", "build", "*.egg-info",
                                 "__pycache__", ".pytest_cache")

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="backend-independent; .ci/run runs it once, on its TensorFlow pass")


def _require_build_tools():
    major = int(version("setuptools").split(".")[0])
    if major < 77:
        reason = f"building the wheel offline needs setuptools >= 77 in this environment (found {version('setuptools')})"
        if os.environ.get("KERAS_MOE_REQUIRE_WHEEL_TEST") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def run(args, cwd, env=None, timeout=300):
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`(venv, environment)`: a fresh virtual environment holding the wheel of this checkout."""
    _require_build_tools()
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=IGNORED)  # the build writes build/ and *.egg-info beside the sources
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", source,
         "-w", tmp / "dist"], cwd=tmp)
    wheel, = (tmp / "dist").glob("keras_moe-*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], cwd=tmp)
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).strip())
    (purelib / "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "KERAS_MOE_CONFIG_DIR")}
    env.update(CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow")
    return venv, env, wheel


def test_the_wheel_holds_the_configs_and_runs_its_own_copy(installed, tmp_path):
    venv, env, wheel = installed
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "keras_moe/conf/config.yaml" in names and "keras_moe/conf/recipes/shakespeare_moe.yaml" in names
    assert "keras_moe/conf/model/router/top_k.yaml" in names
    where = json.loads(run([venv / "bin" / "python", "-c",
                            "import json, keras_moe, keras_moe.training.config as c; "
                            "print(json.dumps([keras_moe.__file__, c.primary_config_path(), c.source_checkout() is None]))"],
                           cwd=tmp_path, env=env).strip().splitlines()[-1])
    assert where[0].startswith(str(venv)) and where[1] == "pkg://keras_moe.conf" and where[2]


def test_params_and_a_users_recipe_from_an_empty_folder(installed, tmp_path):
    venv, env, _ = installed
    keras_moe = venv / "bin" / "keras-moe"
    counts = json.loads(run([keras_moe, "params", "model=mixtral_8x7b"], cwd=tmp_path, env=env).strip().splitlines()[-1])
    assert (counts["total"], counts["active"]) == (46_702_792_704, 12_879_925_248)
    recipes = tmp_path / "mine" / "recipes"
    recipes.mkdir(parents=True)
    (recipes / "big.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: mixtral_8x7b\n")
    mine = json.loads(run([keras_moe, "params", "recipe=big"], cwd=tmp_path,
                          env=dict(env, KERAS_MOE_CONFIG_DIR=str(tmp_path / "mine"))).strip().splitlines()[-1])
    assert mine == counts


def test_train_from_an_empty_folder(installed, tmp_path):
    venv, env, _ = installed
    summary = json.loads(run([venv / "bin" / "keras-moe", "train", "model=moe_lm_tiny", "trainer=smoke"], cwd=tmp_path,
                             env=env).strip().splitlines()[-1])
    name = summary["name"]
    assert name.startswith("shakespeare_moe-")
    assert (tmp_path / "outputs" / name / "model.keras").is_file()
    assert (tmp_path / "saved_models" / name / "1" / "assets" / "keras_moe_config.yaml").is_file()
    assert sorted(os.listdir(tmp_path)) == ["outputs", "saved_models"]
