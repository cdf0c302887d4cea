"""common/degrade.py's fixed degradations and evaluate.py --degrade."""
from __future__ import annotations

import numpy as np
import pytest

from common.degrade import DEGRADATIONS, blur, dark, jpeg, low_contrast, tight
from common.images import read_image
from inference_helpers import portrait_path


@pytest.fixture(scope="module")
def portrait():
    return read_image(str(portrait_path()))


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
@pytest.mark.parametrize("gray", [False, True], ids=["rgb", "gray"])
def test_degradations_keep_shape_and_type_and_change_the_picture(portrait, name, gray):
    img = portrait[..., 1].copy() if gray else portrait
    out = DEGRADATIONS[name](img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() > 1.0
    if name in ("blur", "jpeg"):  # the light stays
        assert abs(float(out.mean()) - float(img.mean())) < 2.0


def test_each_degradation_does_what_it_says(portrait):
    g = portrait[..., 1].astype(np.float32)
    assert dark(portrait).mean() == pytest.approx(0.35 * portrait.mean(), rel=0.02)
    assert low_contrast(portrait)[..., 1].std() == pytest.approx(0.5 * g.std(), rel=0.02)
    sharpness = lambda a: np.abs(np.diff(a.astype(np.float32), axis=1)).mean()
    assert sharpness(blur(portrait)) < 0.6 * sharpness(portrait)
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 200
    assert (jpeg(red)[..., 0].mean(), jpeg(red)[..., 2].mean()) == (pytest.approx(200, abs=8), pytest.approx(0, abs=8))


def test_tight_blacks_out_all_but_the_grown_boxes(portrait):
    box = (100.0, 150.0, 200.0, 230.0)                  # larger side 100 px: 10 px margin
    out = tight(portrait, [box])
    assert out.shape == portrait.shape and out.dtype == np.uint8
    assert np.array_equal(out[140:241, 90:211], portrait[140:241, 90:211])
    assert not out[:139].any() and not out[242:].any() and not out[:, :89].any() and not out[:, 212:].any()
    two = tight(portrait, [box, (300.0, 300.0, 340.0, 340.0)], margin=0.0)
    assert np.array_equal(two[300:341, 300:341], portrait[300:341, 300:341]) and not two[250:290, 250:290].any()
    assert np.array_equal(tight(portrait, [(-50.0, -50.0, 5000.0, 5000.0)]), portrait)  # boxes past the edge
