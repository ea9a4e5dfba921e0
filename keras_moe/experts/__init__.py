"""Experts: stacked expert banks, dense feed-forward blocks, and mixtures of whole models."""

from keras_moe.experts.expert_bank import ExpertBank
from keras_moe.experts.feed_forward import FeedForward
from keras_moe.experts.model_mixture import MixtureOfModels
