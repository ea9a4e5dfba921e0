"""Routers (gates) and the routing types they return: one immutable type per routing family.

- `TokenChoiceRouting` (tokens pick experts): `TopKRouter`, `SwitchRouter`, `NoisyTopKRouter`,
  `SigmoidRouter`, `DenseGate`;
- `ExpertChoiceRouting` (experts pick tokens): `ExpertChoiceRouter`;
- `SoftRouting` (slots mix tokens): `SoftMoERouter`.
"""

from keras_moe.routing.common import DispatchOptions, DispatchResult, TokenGroups, with_aux_losses
from keras_moe.routing.dense_gate import DenseGate
from keras_moe.routing.expert_choice_router import ExpertChoiceRouter, ExpertChoiceRouting
from keras_moe.routing.noisy_top_k_router import NoisyTopKRouter
from keras_moe.routing.registry import ROUTERS, get, register_router, reject_top_k
from keras_moe.routing.router import Router, TokenChoiceRouter
from keras_moe.routing.sigmoid_router import SigmoidRouter
from keras_moe.routing.soft_moe_router import SoftMoERouter, SoftRouting
from keras_moe.routing.switch_router import SwitchRouter
from keras_moe.routing.token_choice import DISPATCH_MODES, TokenChoiceRouting, softmax_top_k_routing, top_k_choices
from keras_moe.routing.top_k_router import TopKRouter
