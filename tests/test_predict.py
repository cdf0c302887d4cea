"""FaceLandmarker and inference/predict.py on real portraits (matplotlib's
bundled Grace Hopper photo, public domain) and on a short generated video.
Accuracy checks need the trained weights and skip without them; the
plumbing checks use an untrained checkpoint."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_helpers import (EYE_WEIGHTS, FACE_WEIGHTS, REPO, check_json_document,  # noqa: E402
                               needs_eye_weights, needs_face_weights,
                               portrait_path, run_predict)
from common.images import read_image  # noqa: E402
from common.predictor import FaceLandmarker, FaceResult, face_to_dict, prepare_image  # noqa: E402


@pytest.fixture(scope="module")
def untrained(ckpts):
    return FaceLandmarker(str(ckpts["face"]), str(ckpts["eyes"]), device="cpu")


@pytest.fixture(scope="module")
def trained():
    if not FACE_WEIGHTS.is_file():
        pytest.skip(f"trained face model {FACE_WEIGHTS} not present")
    return FaceLandmarker(str(FACE_WEIGHTS), str(EYE_WEIGHTS) if EYE_WEIGHTS.is_file() else None, device="cpu")


def tiled(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.tile(rgb, (2, 2, 1)))


# -- API plumbing (untrained weights) --------------------------------------

def test_result_fields_and_colour_orders(untrained):
    path = portrait_path()
    faces = untrained.detect_landmarks(path)
    assert len(faces) == 1
    f = faces[0]
    assert isinstance(f, FaceResult)
    assert f.points.shape == (68, 2) and f.points.dtype == np.float32
    assert f.eye_points.shape == (12, 2) and f.eye_points.dtype == np.float32
    assert set(f.ears) == {"right", "left"}
    assert f.box.shape == (4,) and f.face_box.shape == (4,) and f.score is not None
    rgb = read_image(path)
    same = untrained.detect_landmarks(rgb)[0]
    bgr = untrained.detect_landmarks(np.ascontiguousarray(rgb[:, :, ::-1]), colour="bgr")[0]
    np.testing.assert_allclose(same.points, f.points, atol=1e-3)
    np.testing.assert_allclose(bgr.points, f.points, atol=1e-3)
    with pytest.raises(ValueError):
        untrained.detect_landmarks(rgb, colour="hsv")


def test_no_face_gives_empty_list(untrained):
    assert untrained.detect_landmarks(np.full((240, 320, 3), 128, np.uint8)) == []
    assert untrained.detect_landmarks(np.zeros((50, 60), np.uint8)) == []


def test_tiled_portrait_gives_four_faces_in_place(untrained):
    rgb = read_image(portrait_path())
    h, w = rgb.shape[:2]
    faces = untrained.detect_landmarks(tiled(rgb))
    assert len(faces) == 4
    cells = sorted((int((f.box[0] + f.box[2]) / 2 // w), int((f.box[1] + f.box[3]) / 2 // h)) for f in faces)
    assert cells == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_refine_and_json_form(ckpts):
    fl = FaceLandmarker(str(ckpts["face"]), device="cpu", refine=True)
    faces = fl.detect_landmarks(portrait_path())
    assert len(faces) == 1 and faces[0].eye_points is None and faces[0].ears is None
    d = json.loads(json.dumps(face_to_dict(faces[0])))
    assert len(d["points"]) == 68 and "eye_points" not in d


def test_help_and_argument_errors_do_not_import_torch():
    code = ("import sys; sys.path.insert(0, %r); from common.predict_cli import get_args_parser, main; "
            "a = get_args_parser().parse_args(['--no-save']); rc = main(a); "
            "print(rc, 'torch' in sys.modules, 'matplotlib' in sys.modules)" % str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["2", "False", "False"], out.stderr


# -- accuracy on the real portrait (trained weights) ------------------------

def _eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject's right eye, subject's left eye) centres of (12, 2) eye points."""
    return points[0:6].mean(axis=0), points[6:12].mean(axis=0)


def _check_eyes_on_face(eye_points: np.ndarray, box: np.ndarray) -> None:
    right, left = _eye_centres(eye_points)
    x0, y0, x1, y1 = box
    for c in (right, left):
        assert x0 <= c[0] <= x1 and y0 <= c[1] <= (y0 + y1) / 2, (c, box)
    # The subject's left eye appears on the right of the photo.
    assert left[0] > right[0] + 0.15 * (x1 - x0)


@needs_face_weights
def test_flip_test_mirrors_only_the_final_pass(trained):
    """With refine, the first pass only places the crop: flip_test runs the
    network three times (first pass, final pass, its mirror), and the
    averaged points stay close to the unmirrored ones."""
    rgb = read_image(portrait_path())
    plain = trained.detect_landmarks(rgb)[0].points
    fl = FaceLandmarker(str(FACE_WEIGHTS), device="cpu", refine=True, flip_test=True)
    calls = []
    run = fl.face_model.backend.run_with_scores
    fl.face_model.backend.run_with_scores = lambda batch: calls.append(batch) or run(batch)
    flipped = fl.detect_landmarks(rgb)[0].points
    assert len(calls) == 3
    assert torch.equal(calls[2], torch.flip(calls[1], dims=[3])) and not torch.equal(calls[0], calls[1])
    shift = np.linalg.norm(flipped - plain, axis=1)
    assert 0 < np.median(shift) < 2.0


@needs_face_weights
def test_multi_crop_averages_seven_crops_of_the_final_pass(trained):
    """With refine and multi_crop, the first pass runs once on the plain box
    and the final pass once on a batch of seven crops (MULTI_CROP); the
    result is the mean of the seven crops' points, each in image pixels."""
    from common.landmark_model import MULTI_CROP, moved_box, refined_boxes
    rgb = read_image(portrait_path())
    plain = trained.detect_landmarks(rgb)[0]
    fl = FaceLandmarker(str(FACE_WEIGHTS), device="cpu", refine=True, multi_crop=True)
    calls = []
    run = fl.face_model.backend.run_with_scores
    fl.face_model.backend.run_with_scores = lambda batch: calls.append(batch) or run(batch)
    multi = fl.detect_landmarks(rgb)[0]
    assert [len(c) for c in calls] == [1, len(MULTI_CROP)]
    gray = prepare_image(rgb, "rgb")[1]
    box = refined_boxes(fl.face_model, gray, [multi.face_box])[0]
    one_by_one = [fl.face_model.predict_boxes(gray, [moved_box(box, *v)], multi=False)[0]
                  for v in MULTI_CROP]
    np.testing.assert_allclose(multi.points, np.mean(one_by_one, axis=0), atol=1e-2)
    shift = np.linalg.norm(multi.points - plain.points, axis=1)
    assert 0 < np.median(shift) < 2.0


def test_moved_box_scales_about_the_centre_and_shifts_by_the_width():
    from common.landmark_model import moved_box
    box = np.array([10, 20, 110, 140], np.float32)      # 100 wide, 120 tall, centre (60, 80)
    np.testing.assert_array_equal(moved_box(box), box)
    np.testing.assert_allclose(moved_box(box, 1.1), [5, 14, 115, 146])
    np.testing.assert_allclose(moved_box(box, 1.0, 0.03, -0.03), [13, 17, 113, 137])


def test_portrait_landmarks_land_on_the_face(trained):
    faces = trained.detect_landmarks(portrait_path())
    assert len(faces) == 1
    f = faces[0]
    _check_eyes_on_face(f.points[36:48], f.box)
    # Chin below the nose below the eyes.
    assert f.points[8, 1] > f.points[30, 1] > f.points[36:48, 1].mean()


@needs_face_weights
@needs_eye_weights
def test_portrait_eye_model(trained):
    f = trained.detect_landmarks(portrait_path())[0]
    _check_eyes_on_face(f.eye_points, f.box)
    assert 0.1 < f.ears["right"] < 0.5 and 0.1 < f.ears["left"] < 0.5  # open eyes
    # The two models agree on the eyes to within a few percent of the face.
    side = f.box[2] - f.box[0]
    assert np.abs(f.eye_points - f.points[36:48]).mean() < 0.05 * side


@needs_face_weights
def test_tiled_portrait_landmarks_in_place(trained):
    rgb = read_image(portrait_path())
    h, w = rgb.shape[:2]
    single = trained.detect_landmarks(rgb)[0]
    faces = trained.detect_landmarks(tiled(rgb))
    assert len(faces) == 4
    side = single.box[2] - single.box[0]
    for f in faces:
        cx, cy = int((f.box[0] + f.box[2]) / 2 // w), int((f.box[1] + f.box[3]) / 2 // h)
        shifted = f.points - np.array([cx * w, cy * h], np.float32)
        assert (shifted >= 0).all() and (shifted[:, 0] < w).all() and (shifted[:, 1] < h).all()
        # Same face, nearly the same points (the detector's boxes vary a little between tiles).
        assert np.linalg.norm(shifted - single.points, axis=1).mean() < 0.03 * side
        _check_eyes_on_face(f.points[36:48], f.box)


# -- command line: stills and video -----------------------------------------

def test_cli_json_on_portrait(tmp_path, ckpts):
    shutil.copy(portrait_path(), tmp_path / "pic.jpg")
    face_w = FACE_WEIGHTS if FACE_WEIGHTS.is_file() else ckpts["face"]
    eye_w = EYE_WEIGHTS if EYE_WEIGHTS.is_file() else ckpts["eyes"]
    proc = run_predict("pic.jpg", "--weights", face_w, "--eyes", "--eye-weights", eye_w, "--lines",
                       "--json", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout holds the JSON only; messages go to stderr
    check_json_document(doc, eyes=True)
    assert len(doc["images"]) == 1 and len(doc["images"][0]["faces"]) == 1
    out = tmp_path / "pic_landmarks.jpg"
    assert doc["images"][0]["output"] == "pic_landmarks.jpg" and out.is_file()
    assert cv2.imread(str(out)).shape == (600, 512, 3)


def _write_video(path: Path, frames: int = 10, fps: float = 10.0) -> None:
    bgr = cv2.imread(portrait_path())
    h, w = bgr.shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for i in range(frames):
        vw.write(np.roll(bgr, 2 * i, axis=1))  # a slow pan
    vw.release()


def test_cli_video(tmp_path, ckpts):
    _write_video(tmp_path / "clip.mp4")
    face_w = FACE_WEIGHTS if FACE_WEIGHTS.is_file() else ckpts["face"]
    proc = run_predict("clip.mp4", "--weights", face_w, "--eyes", "--eye-weights", ckpts["eyes"],
                       "--json", "clip.json", "--output", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "clip.json").read_text())
    check_json_document(doc, eyes=True)
    (v,) = doc["videos"]
    assert v["smoothed"] is True and len(v["frames"]) == 10
    ids = {f["id"] for fr in v["frames"] for f in fr["faces"]}
    assert sum(len(fr["faces"]) for fr in v["frames"]) >= 8 and ids == {1}  # one face, one track
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip_landmarks.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 10


def test_shipped_int8_models_agree_with_the_checkpoints(trained):
    """The default on a CPU with onnxruntime: weights/*.int8.onnx, which must
    put the portrait's points where the float32 checkpoints put them."""
    pytest.importorskip("onnxruntime")
    face8, eyes8 = REPO / "weights" / "face.int8.onnx", REPO / "weights" / "eyes.int8.onnx"
    if not (face8.is_file() and eyes8.is_file()):
        pytest.skip("shipped int8 models not present")
    fast = FaceLandmarker(device="cpu", eye_weights="default")
    assert Path(fast.weights) == face8 and Path(fast.eye_weights) == eyes8
    assert fast.face_model.description["quantization"]["calibration_faces"] == 256
    a, b = trained.detect_landmarks(portrait_path()), fast.detect_landmarks(portrait_path())
    assert len(a) == len(b) == 1
    side = float(a[0].face_box[2] - a[0].face_box[0])
    shift = np.linalg.norm(a[0].points - b[0].points, axis=1)
    assert np.median(shift) < 0.01 * side and shift.max() < 0.05 * side, (np.median(shift), shift.max(), side)
    if a[0].eye_points is not None:
        eye_shift = np.linalg.norm(a[0].eye_points - b[0].eye_points, axis=1)
        assert eye_shift.max() < 0.02 * side
