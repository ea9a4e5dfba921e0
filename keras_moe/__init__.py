"""keras-moe: sparse Mixture-of-Experts layers and models for Keras 3.

`import keras_moe` registers every layer and model class for `.keras` loading (the sparse
keras-hub classes of `keras_moe.hub` included) and every model family's serving signatures.
"""

# First, before TensorFlow loads: a quiet start for the `keras-moe` command (no effect on library use).
from keras_moe.utils import start_up  # noqa: F401, I001

from keras_moe import dispatch, experts, hub, layers, losses, metrics, models, routing
from keras_moe.experts import ExpertBank, FeedForward, MixtureOfModels
from keras_moe.layers import ModalityMoELayer, MoELayer
from keras_moe.losses import MixtureOfExpertsLoss, SeparateExpertsAndGateLoss
from keras_moe.params import count_params
from keras_moe.routing import (
    DenseGate,
    ExpertChoiceRouter,
    ExpertChoiceRouting,
    NoisyTopKRouter,
    Router,
    SigmoidRouter,
    SoftMoERouter,
    SoftRouting,
    SwitchRouter,
    TokenChoiceRouting,
    TopKRouter,
)

__version__ = "0.1.0"
