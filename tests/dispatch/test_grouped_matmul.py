"""grouped_matmul and padded_grouped_matmul against a numpy loop."""

import numpy as np
import pytest
from keras import ops

from keras_moe.dispatch import grouped_matmul, padded_grouped_matmul
from tests.conftest import random_tokens, to_numpy


def np_grouped_matmul(x, w, group_sizes):
    out = np.zeros((x.shape[0], w.shape[-1]), "float64")
    start = 0
    for expert, size in enumerate(group_sizes):
        out[start : start + size] = x[start : start + size].astype("float64") @ w[expert]
        start += size
    return out  # rows past sum(group_sizes) stay zero


GROUP_SIZES = [
    [2, 3, 2],  # covers every row
    [7, 0, 0],  # one group
    [0, 4, 3],  # empty first group
    [2, 0, 3],  # empty middle group, 2 leftover rows
    [1, 1, 0],  # 5 leftover rows
    [0, 0, 0],  # nothing: all zeros
]


@pytest.mark.parametrize("fn", [grouped_matmul, padded_grouped_matmul], ids=["grouped", "padded"])
@pytest.mark.parametrize("group_sizes", GROUP_SIZES, ids=str)
def test_grouped_matmul_matches_loop(fn, group_sizes):
    x = random_tokens(7, 3, seed=1)
    w = random_tokens(3, 3, 5, seed=2)
    out = to_numpy(fn(x, w, ops.convert_to_tensor(np.array(group_sizes, "int32"))))
    assert out.shape == (7, 5)
    expected = np_grouped_matmul(x, w, group_sizes)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[sum(group_sizes) :], 0.0)


@pytest.mark.parametrize("fn", [grouped_matmul, padded_grouped_matmul], ids=["grouped", "padded"])
def test_grouped_matmul_rows_are_independent(fn):
    """Changing the rows of one group leaves the others untouched."""
    x = random_tokens(6, 4, seed=3)
    w = random_tokens(2, 4, 2, seed=4)
    sizes = ops.convert_to_tensor(np.array([2, 3], "int32"))
    base = to_numpy(fn(x, w, sizes))
    x2 = x.copy()
    x2[:2] += 10.0  # group 0 and the leftover row change
    x2[5] += 10.0
    moved = to_numpy(fn(x2, w, sizes))
    np.testing.assert_allclose(moved[2:5], base[2:5], rtol=1e-6)
    np.testing.assert_array_equal(moved[5], 0.0)
    assert not np.allclose(moved[:2], base[:2])
