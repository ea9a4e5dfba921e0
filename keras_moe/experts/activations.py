"""Expert activations: plain (ReLU, GELU, ...) and gated (SwiGLU, GeGLU, GPT-OSS's clamped SwiGLU).

An activation is named by a string, or by a dict `{"name": ..., **parameters}` for parameterised
ones (`{"name": "clamped_swiglu", "limit": 7.0, "alpha": 1.702}`). Gated activations take the gate
and up projections, `act(gate) * up` (Shazeer 2020, "GLU Variants Improve Transformer").
"""

import math

import keras
from keras import ops

PLAIN = ("relu", "gelu", "gelu_tanh", "silu")
GATED = ("swiglu", "geglu", "geglu_tanh", "reglu", "clamped_swiglu")
ACTIVATIONS = PLAIN + GATED
_CLAMPED_DEFAULTS = {"limit": 7.0, "alpha": 1.702}  # GPT-OSS (OpenAI 2025)


def _gelu_tanh(x):
    return keras.activations.gelu(x, approximate=True)


_FUNCTIONS = {
    "relu": keras.activations.relu,
    "gelu": keras.activations.gelu,  # exact (erf)
    "gelu_tanh": _gelu_tanh,  # tanh approximation (GPT-2, Gemma)
    "silu": keras.activations.silu,
    "swiglu": keras.activations.silu,
    "geglu": keras.activations.gelu,
    "geglu_tanh": _gelu_tanh,
    "reglu": keras.activations.relu,
}


class ExpertActivation:
    """A resolved activation: `gated`, `config` (what `get_config` stores) and `__call__`.

    Call it as `act(hidden)` (plain) or `act(gate, up)` (gated).
    """

    def __init__(self, name, **params):
        self.name = name
        self.params = params
        self.gated = name in GATED

    @property
    def config(self):
        return self.name if not self.params else {"name": self.name, **self.params}

    def __call__(self, gate, up=None):
        if self.name == "clamped_swiglu":
            # GPT-OSS: gate clipped from above, up clipped both ways and shifted by one.
            limit, alpha = self.params["limit"], self.params["alpha"]
            gate = ops.minimum(gate, limit)
            up = ops.clip(up, -limit, limit)
            return (up + 1.0) * gate * ops.sigmoid(alpha * gate)
        out = _FUNCTIONS[self.name](gate)
        return out * up if self.gated else out


def get(spec):
    """`spec` (a name or `{"name": ..., **params}`) -> `ExpertActivation`; errors name the bad value."""
    if isinstance(spec, ExpertActivation):
        return spec
    if isinstance(spec, dict):
        params = dict(spec)
        name = params.pop("name", None)
    else:
        name, params = spec, {}
    if name not in ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {list(ACTIVATIONS)} (or a dict with `name`). Received: activation={spec!r}")
    if name == "clamped_swiglu":
        unknown = set(params) - set(_CLAMPED_DEFAULTS)
        if unknown:
            raise ValueError(f"`clamped_swiglu` takes `limit` and `alpha`; unknown {sorted(unknown)} in activation={spec!r}")
        params = {**_CLAMPED_DEFAULTS, **params}
        for key, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"`{key}` of clamped_swiglu must be a number > 0. Received: activation={spec!r}")
            params[key] = float(value)
    elif params:
        raise ValueError(f"Activation {name!r} takes no parameters. Received: activation={spec!r}")
    return ExpertActivation(name, **params)


def check_activation(spec):
    """Validates `spec`; returns it in its serialisable form."""
    return get(spec).config


def is_gated(spec):
    return get(spec).gated
