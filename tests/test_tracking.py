"""One Euro filter, blink counter, IoU tracking and drawing: small pure checks."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.drawing import REGION_COLOURS, draw_faces  # noqa: E402
from common.predictor import FaceResult  # noqa: E402
from common.tracking import BlinkCounter, FaceTracker, OneEuroFilter  # noqa: E402


def test_one_euro_reduces_jitter_and_follows_moves():
    rng = np.random.default_rng(0)
    f = OneEuroFilter()
    still = [f(np.array([100.0, 50.0]) + rng.normal(0, 0.5, 2), t / 30, scale=200) for t in range(300)]
    assert np.std(np.array(still[30:]), axis=0).max() < 0.3  # input std is 0.5 px
    # A steady move of 2 face sizes per second is followed with little lag.
    f.reset()
    out = [f(np.array([400.0 * t / 30, 0.0]), t / 30, scale=200) for t in range(60)]
    assert abs(out[-1][0] - 400.0 * 59 / 30) < 0.005 * 200
    assert f(np.zeros(3), 0.0).shape == (3,)  # a new shape restarts the filter


def test_blink_counter_fixed_threshold():
    b = BlinkCounter(threshold=0.2, min_frames=2)
    ears = [0.3, 0.3, 0.1, 0.3, 0.1, 0.1, 0.1, 0.3, 0.3, 0.15, 0.12, 0.3]
    ended = [b.update(e) for e in ears]
    assert b.count == 2 and ended == [False] * 7 + [True] + [False] * 3 + [True]


def test_blink_counter_relative_to_the_faces_own_open_eyes():
    rng = np.random.default_rng(0)
    # Open eyes at EAR 0.20 with noise (a smiling face): a fixed 0.21 threshold
    # would count dozens of blinks, the relative test none.
    ears = 0.20 + rng.normal(0, 0.01, 600)
    rel, fixed = BlinkCounter(), BlinkCounter(threshold=0.21)
    for e in ears:
        rel.update(e)
        fixed.update(e)
    assert rel.count == 0 and fixed.count > 10
    # The same face with five short dips (3 frames at 0.08): each counted once.
    dipped = ears.copy()
    for start in (100, 200, 300, 400, 500):
        dipped[start:start + 3] = 0.08
    b = BlinkCounter()
    assert sum(b.update(e) for e in dipped) == 5 == b.count
    # Wide-open eyes (0.35) and a half-closing to 0.22 that a fixed 0.21 misses.
    wide = np.full(200, 0.35)
    wide[100:104] = 0.22
    b = BlinkCounter()
    for e in wide:
        b.update(e)
    assert b.count == 1
    # A long closure (2 s at 30 frames/s) does not drag the baseline down: one blink.
    long = np.r_[np.full(100, 0.3), np.full(60, 0.05), np.full(20, 0.3)]
    b = BlinkCounter()
    for e in long:
        b.update(e)
    assert b.count == 1


def test_tracker_keeps_ids_by_overlap():
    tr = FaceTracker(max_missing=2)
    a, b = np.array([0, 0, 100, 100], np.float32), np.array([300, 0, 400, 100], np.float32)
    t1 = tr.match([a, b])
    t2 = tr.match([b + 5, a + 5])  # order swapped, slight move
    assert [t.id for t in t2] == [t1[1].id, t1[0].id]
    for _ in range(3):
        tr.match([])
    assert tr.match([a])[0].id not in (t1[0].id, t1[1].id)  # the old track expired


def test_draw_faces_colour_order():
    pts = np.stack(np.meshgrid(np.arange(17) * 6 + 20, np.arange(4) * 6 + 20), -1).reshape(-1, 2)[:68]
    face = FaceResult(np.array([10, 10, 130, 60], np.float32), np.array([10, 10, 130, 60], np.float32),
                      None, pts.astype(np.float32))
    rgb = draw_faces(np.zeros((80, 140, 3), np.uint8), [face], "rgb", lines=True)
    bgr = draw_faces(np.zeros((80, 140, 3), np.uint8), [face], "bgr", lines=True)
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])
    x, y = pts[0]
    assert tuple(rgb[y, x]) == REGION_COLOURS["jaw"]


def _panned_frames(n: int, step: int = 3) -> list[np.ndarray]:
    import cv2
    from inference_helpers import portrait_path
    bgr = cv2.resize(cv2.imread(portrait_path()), None, fx=0.6, fy=0.6)
    h, w = bgr.shape[:2]
    return [cv2.warpAffine(bgr, np.float32([[1, 0, step * i - 20], [0, 1, 0]]), (w, h),
                           borderMode=cv2.BORDER_REPLICATE) for i in range(n)]


def test_video_tracking_follows_the_face_and_detects_on_schedule():
    """Tracked frames run no detector and stay on the face (compared with
    detecting every frame); a frame without the face sends the next one
    back to the detector."""
    import pytest
    from inference_helpers import FACE_WEIGHTS
    if not FACE_WEIGHTS.is_file():
        pytest.skip("shipped weights not present")
    from common.predictor import FaceLandmarker
    from common.video import VideoLandmarker

    fl = FaceLandmarker(str(FACE_WEIGHTS), device="cpu")
    calls = []
    detect = fl.detector.detect
    fl.detector.detect = lambda rgb: calls.append(1) or detect(rgb)
    frames = _panned_frames(12)
    tracked = VideoLandmarker(fl, FaceTracker(smooth=False), detect_every=5)
    every = VideoLandmarker(fl, FaceTracker(smooth=False), track=False)
    flags = []
    for f in frames:
        (a, ta), = tracked.process(f)
        flags.append(tracked.detected)
        n = len(calls)
        (b, _), = every.process(f)
        assert len(calls) == n + 1
        side = float(b.face_box[2] - b.face_box[0])
        assert np.median(np.linalg.norm(a.points - b.points, axis=1)) < 0.03 * side
        assert ta.id == 1 and a.point_scores is not None
    assert flags == [True, False, False, False, False, True, False, False, False, False, True, False]
    # The face leaves: the tracked face is dropped or flagged, and the next frame detects.
    tracked.process(np.full_like(frames[0], 127))
    tracked.process(frames[0])
    assert tracked.detected


def test_gray_image_matches_prepare_image():
    """Tracked video frames take the gray image alone: the same pixels."""
    from common.predictor import gray_image, prepare_image
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3)).astype(np.uint8)
    for colour in ("bgr", "rgb"):
        np.testing.assert_array_equal(gray_image(frame, colour), prepare_image(frame, colour)[1])
    np.testing.assert_array_equal(gray_image(frame[:, :, 0]), frame[:, :, 0])
