"""Combining expert predictions with gate weights: a mixture (Jacobs et al. 1991) or a product of
experts (Hinton 2002). Used by `MixtureOfModels` and by the mixture objectives.

Axis letters: `b` batch, `e` experts, `d` output features.
"""

from keras import ops

COMBINATIONS = ("arithmetic", "geometric")
_EPSILON = 1e-7


def combine_expert_outputs(outputs, gates, combination="arithmetic"):
    """Combines expert outputs `[b, e, d]` with gate weights `[b, e]` into `[b, d]`.

    - `"arithmetic"`: `sum_e g_e y_e`, a mixture (Jacobs et al. 1991); for distributions, the mixture
      distribution.
    - `"geometric"`: the experts' outputs are class probabilities and the result is their gated,
      renormalised product `p(y) ∝ prod_e p_e(y) ** g_e`, i.e. `softmax(sum_e g_e log p_e)`
      (a product of experts, Hinton 2002; a weighted geometric-mean / logarithmic opinion pool,
      Genest & Zidek 1986). An expert that gives a class a low probability vetoes it, so one
      confident, wrong expert is corrected by a confident other one instead of being averaged in.
    """
    if combination == "arithmetic":
        return ops.einsum("bed,be->bd", outputs, gates)
    log_probabilities = ops.log(ops.maximum(outputs, _EPSILON))
    return ops.softmax(ops.einsum("bed,be->bd", log_probabilities, gates), axis=-1)
