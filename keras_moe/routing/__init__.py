"""Routers (gates): every router returns one `RoutingResult`."""

from keras_moe.routing.dense_gate import DenseGate
from keras_moe.routing.expert_choice_router import ExpertChoiceRouter
from keras_moe.routing.noisy_top_k_router import NoisyTopKRouter
from keras_moe.routing.registry import ROUTERS, get, register_router
from keras_moe.routing.router import Router
from keras_moe.routing.routing_result import RoutingResult
from keras_moe.routing.sigmoid_router import SigmoidRouter
from keras_moe.routing.soft_moe_router import SoftMoERouter
from keras_moe.routing.switch_router import SwitchRouter
from keras_moe.routing.top_k_router import TopKRouter
