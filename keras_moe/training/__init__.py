"""Training runs as a library: configs to objects, `model.fit` that resumes exactly, run folders,
exports. The `keras-moe` CLI, the benchmarks and the configs (`conf/strategy/*.yaml`) use it; the
layers and models never need it."""

from keras_moe.training.building import (
    attach_preprocessor,
    backbone_config,
    backbone_parameter_count,
    build_data,
    build_model,
    build_optimizer,
    compile_model,
    instantiate,
)
from keras_moe.training.config import compose_config
from keras_moe.training.errors import BackupError, ConfigError, RunConflict
from keras_moe.training.run import train
