"""The detector looks for faces from ``min_face`` pixels up, on a copy
scaled so that such a face fills the cascade's window."""
from __future__ import annotations

import numpy as np
import pytest

from common.detector import DETECT_MAX_SIDE, MIN_FACE, DetectorError, HaarDetector, make_detector
from common.imageio import read_image
from inference_helpers import portrait_path, run_predict


def test_detect_scale_follows_min_face_and_max_side():
    d = HaarDetector(min_face=48)
    assert d.detect_scale(600, 512) == pytest.approx(24 / 48)
    assert HaarDetector(min_face=12).detect_scale(600, 512) == 1.0           # never upscaled
    big = DETECT_MAX_SIDE * 4
    assert HaarDetector(min_face=24).detect_scale(big, big) == pytest.approx(0.25)


def test_min_face_decides_which_faces_are_found():
    rgb = read_image(portrait_path())
    faces = make_detector("haar").detect(rgb)
    assert len(faces) == 1
    side = faces[0].box[2] - faces[0].box[0]
    assert side > MIN_FACE
    # Looking only for faces larger than this one finds nothing; the boxes
    # are in full-size pixels whatever the detection scale.
    assert make_detector("haar", min_face=1.5 * side).detect(rgb) == []
    small = make_detector("haar", min_face=0.5 * side).detect(rgb)
    assert len(small) == 1
    assert np.abs(small[0].box - faces[0].box).max() < 0.15 * side


@pytest.mark.parametrize("bad", [0, -5])
def test_min_face_must_be_positive(bad):
    with pytest.raises(DetectorError, match="positive"):
        make_detector("haar", min_face=bad)
    r = run_predict(portrait_path(), "--min-face", str(bad), "--json", "-")
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "positive" in r.stderr


def test_help_states_the_default_min_face():
    r = run_predict("--help")
    assert r.returncode == 0 and f"default: {MIN_FACE:g}," in " ".join(r.stdout.split())
