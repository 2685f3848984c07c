"""The drawing helpers: the TensorBoard pmf image."""

import numpy as np
import torch

from fh_rl.plots import pmf_image


def test_pmf_image_draws_bars_and_target():
    pmf = torch.tensor([[[0.0, 0.5, 1.0, 0.5]], [[1.0, 0.0, 0.0, 0.0]]])  # (2, 1, 4)
    img = pmf_image(pmf, torch.tensor([[2], [3]]), height=10)
    assert img.shape == (3, 20, 4 * 64) and img.dtype == np.uint8
    col = lambda row, b: img[:, row * 10 : row * 10 + 9, b * 64]  # noqa: E731  (without the baseline)
    assert (col(0, 0) == 255).all()  # empty bin stays white
    assert tuple(col(0, 2)[:, 0]) == (214, 39, 40)  # full target bar is red to the top
    assert tuple(col(1, 0)[:, 0]) == (31, 119, 180)  # full non-target bar is blue
