"""Which packages the distribution holds (the metadata is in pyproject.toml).

The repository keeps its configs at the top level (`conf/`, `recipes/`); a wheel carries them inside
the package as `keras_moe.conf` and `keras_moe.conf.recipes`, which Hydra reads as
`pkg://keras_moe.conf`. Each config group folder is listed as a package so that its YAML files ship.
"""

from setuptools import find_namespace_packages, find_packages, setup

CONFIG_PACKAGES = {"keras_moe.conf": "conf", "keras_moe.conf.recipes": "recipes"}
CONFIG_GROUPS = [f"keras_moe.conf.{group}" for group in find_namespace_packages(where="conf", exclude=["*__pycache__*"])]

setup(
    packages=find_packages(include=["keras_moe", "keras_moe.*"]) + list(CONFIG_PACKAGES) + CONFIG_GROUPS,
    package_dir=CONFIG_PACKAGES,
    package_data={package: ["*.yaml"] for package in [*CONFIG_PACKAGES, *CONFIG_GROUPS]},
)
