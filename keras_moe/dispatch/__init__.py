"""Dispatch and combine: pure `keras.ops` functions that move tokens to experts and back."""

from keras_moe.dispatch.all_experts import all_experts_dispatch
from keras_moe.dispatch.blocked import blocked_dispatch
from keras_moe.dispatch.capacity import capacity_dispatch, capacity_slots, expert_capacity
from keras_moe.dispatch.choose import auto_mode
from keras_moe.dispatch.compilation import in_xla_compilation
from keras_moe.dispatch.dropless import dropless_dispatch
from keras_moe.dispatch.expert_choice import expert_choice_dispatch
from keras_moe.dispatch.gathered import gathered_dispatch
from keras_moe.dispatch.grouped_matmul import grouped_matmul, padded_grouped_matmul
from keras_moe.dispatch.soft import soft_dispatch
