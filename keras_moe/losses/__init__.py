"""Auxiliary routing losses (pure functions) and the classical mixture-of-experts loss."""

from keras_moe.losses.auxiliary import (
    coefficient_of_variation_squared,
    expert_assignment_fraction,
    importance_loss,
    load_balancing_loss,
    load_loss,
    router_entropy,
    router_z_loss,
)
from keras_moe.losses.combination import COMBINATIONS, combine_expert_outputs
from keras_moe.losses.limoe import global_entropy_loss, local_entropy_loss, modality_entropy_losses
from keras_moe.losses.mixture_loss import MixtureOfExpertsLoss, SeparateExpertsAndGateLoss, pack_mixture
