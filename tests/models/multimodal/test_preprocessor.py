"""The multimodal preprocessor's in-graph image preparation (also what the serving graph runs)."""

import numpy as np

from keras_moe.models.multimodal.preprocessor import prepare_images


def test_prepare_images_composites_alpha_on_white_and_resizes():
    rgba = np.zeros((1, 4, 4, 4), "uint8")
    rgba[0, :2, :, :] = [255, 0, 0, 255]  # top half opaque red, bottom half transparent
    out = np.asarray(prepare_images(rgba, 4))
    np.testing.assert_allclose(out[0, 0, 0], [1, 0, 0])
    np.testing.assert_allclose(out[0, 3, 0], [1, 1, 1])  # transparent -> white
    half = rgba.copy()
    half[0, 3, 0] = [0, 0, 255, 128]  # half-transparent blue over white
    np.testing.assert_allclose(np.asarray(prepare_images(half, 4))[0, 3, 0], [1 - 128 / 255, 1 - 128 / 255, 1], atol=1e-6)
    resized = np.asarray(prepare_images(rgba[..., :3], 8))
    assert resized.shape == (1, 8, 8, 3) and resized.min() >= 0 and resized.max() <= 1
    np.testing.assert_allclose(resized[0, 0, 0], [1, 0, 0], atol=1e-6)  # RGB passes through (red corner)
