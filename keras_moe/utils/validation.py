"""Argument checks shared by every layer: each error names the argument and the value received."""

import math


def check_positive_int(name, value, allow_zero=False):
    """Returns `value` if it is an int > 0 (or >= 0), else raises `ValueError` naming it."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be an integer {bound}. Received: {name}={value!r}")
    return value


def check_non_negative_float(name, value):
    """Returns `float(value)` if it is a finite number >= 0, else raises `ValueError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


def check_positive_float(name, value):
    """Returns `float(value)` if it is a finite number > 0, else raises `ValueError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0. Received: {name}={value!r}")
    return float(value)


def check_choice(name, value, choices):
    """Returns `value` if it is one of `choices`, else raises `ValueError` listing them."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}. Received: {name}={value!r}")
    return value


def check_top_k(top_k, num_experts):
    """`top_k` must be an int in [1, num_experts]."""
    check_positive_int("top_k", top_k)
    if top_k > num_experts:
        raise ValueError(
            f"`top_k` must be <= `num_experts`. Received: top_k={top_k}, num_experts={num_experts}"
        )
    return top_k


def check_bool(name, value):
    """Returns `value` if it is a bool, else raises `ValueError` naming it."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return value


def check_fraction(name, value, upper=1.0, include_upper=False):
    """Returns `float(value)` if it is a number in `[0, upper)` (or `[0, upper]`), else raises `ValueError`."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < 0 or value > upper or (value == upper and not include_upper):
        bound = f"[0, {upper}]" if include_upper else f"[0, {upper})"
        raise ValueError(f"`{name}` must be a number in {bound}. Received: {name}={value!r}")
    return float(value)
