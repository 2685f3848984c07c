"""The drawing helpers: labelled action bins and the pmf image (TensorBoard's val/pmf), with real codecs."""

import numpy as np
import pytest
import torch

from fh_rl.build import build_codec
from fh_rl.config import EnvConfig
from fh_rl.infra.plots import bin_axis, pmf_image


def test_atari_bins_are_labelled_with_action_names_in_codec_order():
    axis = bin_axis(build_codec(EnvConfig(name="Breakout", ordering="joystick")))
    assert axis.labels == ["NOOP", "LEFT", "RIGHT", "FIRE"] and axis.values is None  # ALE: NOOP, FIRE, RIGHT, LEFT
    assert bin_axis(build_codec(EnvConfig(name="Breakout"))).labels == ["NOOP", "FIRE", "RIGHT", "LEFT"]


def test_box_bins_are_labelled_with_action_values_margins_beyond_the_bounds():
    axis = bin_axis(build_codec(EnvConfig(name="Pendulum-v1", num_bins=4, margin_bins=1)))
    np.testing.assert_allclose(axis.values, [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])  # torque in [-2, 2]
    assert axis.labels[1] == "-1.5" and axis.bounds == (-2.0, 2.0)


def marker_column(img):
    """The column with the most of the dataset-action marker's red (#d62728): the vertical dashed line."""
    r, g, b = img.astype(int)
    red = (r > 150) & (g < 110) & (b < 110)  # (H, W)
    counts = red.sum(axis=0)
    assert counts.max() > 0.3 * img.shape[1] / 2  # a line over much of the panel's height, not just the legend's dash
    return int(counts.argmax())


@pytest.mark.parametrize("env", ["Breakout", "Pendulum-v1"])
def test_pmf_image_marks_the_dataset_action_where_it_is(env):
    axis = bin_axis(build_codec(EnvConfig(name=env, num_bins=8)))
    K = len(axis.labels)
    pmf = torch.softmax(torch.randn(1, 1, K), dim=-1)  # (1, A, K)
    left = pmf_image(pmf, torch.tensor([[0]]), axis, count=1)
    right = pmf_image(pmf, torch.tensor([[K - 1]]), axis, count=1)
    assert left.dtype == np.uint8 and left.shape[0] == 3 and left.shape[1] > 100 and left.shape[2] > 200
    assert marker_column(left) < marker_column(right)  # the marker moved with the target bin
    several = pmf_image(pmf.repeat(5, 1, 1), torch.zeros(5, 1, dtype=torch.long), axis, count=5)
    assert several.shape[1] > 2 * left.shape[1]  # one panel per held-out step, two per row
