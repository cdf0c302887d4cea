"""The library owns video: ``common.video.VideoLandmarker`` smooths, counts
blinks and estimates pose, and ``predict.py`` on a clip gives exactly what
the API loop of the README gives. Untrained checkpoints: the plumbing."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import run_predict  # noqa: E402
from test_predict_outputs import write_video  # noqa: E402


def api_frames(clip: Path, ckpts, smooth: bool = True) -> list[list[dict]]:
    from common.predictor import FaceLandmarker, face_to_dict
    from common.tracking import FaceTracker
    from common.video import VideoLandmarker, read_frames
    fl = FaceLandmarker(str(ckpts["face"]), device="cpu", pose=True)
    fl.add_eye_model(str(ckpts["eyes"]))
    cap = cv2.VideoCapture(str(clip))
    vl = VideoLandmarker(fl, FaceTracker(smooth=smooth), fps=cap.get(cv2.CAP_PROP_FPS))
    out = []
    for index, frame in read_frames(cap):
        pairs = vl.process(frame, colour="bgr")
        out.append([face_to_dict(f, tr.id, blinks=tr.blinks.count) for f, tr in pairs])
    return out


def test_predict_py_on_a_clip_gives_the_api_loops_points_blinks_and_pose(tmp_path, ckpts):
    clip = tmp_path / "clip.mp4"
    write_video(clip, frames=24)
    proc = run_predict(clip, "--eyes", "--eye-weights", ckpts["eyes"], "--pose", "--no-save", "--json", "v.json",
                       "--weights", ckpts["face"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (video,) = json.loads((tmp_path / "v.json").read_text())["videos"]
    cli = [fr["faces"] for fr in video["frames"]]
    api = api_frames(clip, ckpts)
    assert len(cli) == len(api) == 24 and sum(map(len, api)) > 0
    for a_faces, c_faces in zip(api, cli):
        assert [f["id"] for f in a_faces] == [f["id"] for f in c_faces]
        for a, c in zip(a_faces, c_faces):
            np.testing.assert_allclose(a["points"], c["points"], atol=0.011)
            np.testing.assert_allclose(a["eye_points"], c["eye_points"], atol=0.011)
            assert a["blinks"] == c["blinks"] and a["ears"] == c["ears"]
            for k in ("yaw", "pitch", "roll"):
                assert abs(a["pose"][k] - c["pose"][k]) < 0.011
    # The stream smooths: without smoothing the points differ, and jump more between frames.
    raw = api_frames(clip, ckpts, smooth=False)
    assert video["smoothed"] is True

    def motion(frames):
        pts = np.array([fr[0]["points"] for fr in frames if fr])
        return float(np.abs(np.diff(pts, 2, axis=0)).mean())  # the frame-to-frame change of the motion
    assert motion(api) < motion(raw)


def test_video_scores_measure_jitter_and_lag_against_the_ground_truth():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training" / "tools"))
    from evaluate_video import video_scores
    rng = np.random.default_rng(0)
    n = 120
    base = rng.uniform(100, 300, (68, 2)).astype(np.float32)
    base[36], base[45] = (100, 200), (200, 200)                       # eye corners 100 px apart
    walk = np.stack([np.full((68, 2), 2.0 * np.sin(i / 10)) for i in range(n)]) * np.array([30, 10])
    gts = (base + walk).astype(np.float32)
    exact = video_scores(gts.copy(), gts)
    assert exact["jitter"] == 0 and exact["lag"] == 0 and np.allclose(exact["nme"], 0)
    late = np.concatenate([gts[:3], gts[:-3]])                        # three frames behind
    assert abs(video_scores(late, gts)["lag"] - 3) < 0.3
    shaky = gts + rng.normal(0, 1.0, gts.shape).astype(np.float32)    # 1 px per axis
    s = video_scores(shaky, gts)
    # The step between two frames has 2 px^2 per axis: its length is about sqrt(pi) px, 1.8% of 100 px.
    assert 1.5 < s["jitter"] < 2.0 and s["lag"] < 0.5
    missed = shaky.copy()
    missed[10] = np.nan
    assert np.isinf(video_scores(missed, gts)["nme"][10])
