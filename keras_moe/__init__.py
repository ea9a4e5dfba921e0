"""keras-moe: sparse Mixture-of-Experts layers and models for Keras 3."""

from keras_moe import dispatch, experts, layers, losses, metrics, routing
from keras_moe.experts import ExpertBank, FeedForward, MixtureOfModels
from keras_moe.layers import MoELayer
from keras_moe.losses import MixtureOfExpertsLoss, SeparateExpertsAndGateLoss
from keras_moe.params import count_params
from keras_moe.routing import (
    DenseGate,
    ExpertChoiceRouter,
    NoisyTopKRouter,
    Router,
    RoutingResult,
    SigmoidRouter,
    SoftMoERouter,
    SwitchRouter,
    TopKRouter,
)

__version__ = "0.1.0"
