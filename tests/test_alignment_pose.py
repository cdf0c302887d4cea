"""Face alignment (common/alignment.py), head pose (common/pose.py) and their
plumbing into FaceResult / face_to_dict and drawing."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from inference_helpers import FACE_WEIGHTS, REPO, needs_face_weights, portrait_path

from common.alignment import (ARCFACE_112, align_face, alignment_matrix, arcface_points, fit_similarity,
                              invert_matrix, template_points, transform_points)
from common.landmarks import FLIP_PERMUTATION_68
from common.pose import (default_camera, estimate_pose, load_face_shape, project_shape,
                         rotation_from_angles)

SIZE = (480, 640)          # (height, width) of the synthetic camera's image
DISTANCE = 8.0             # face units (outer-eye-corner distances) from the camera


def synthetic_points(yaw: float, pitch: float, roll: float, size=SIZE, offset=(0.3, -0.2)) -> np.ndarray:
    """The mean face projected at known angles: (68, 2) float32."""
    t = np.array([offset[0], offset[1], DISTANCE])
    return project_shape(rotation_from_angles(yaw, pitch, roll), t, default_camera(size))


def mirror_points(points: np.ndarray, width: int) -> np.ndarray:
    m = points[list(FLIP_PERMUTATION_68)].copy()
    m[:, 0] = width - 1 - m[:, 0]
    return m


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def eye_angle(points: np.ndarray) -> float:
    """Angle of the line from the right-eye centre to the left-eye centre, degrees (0 = level)."""
    d = points[42:48].mean(0) - points[36:42].mean(0)
    return float(np.degrees(np.arctan2(d[1], d[0])))


# ---------------------------------------------------------------- alignment

def test_fit_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (10, 2))
    m = similarity(-37.0, 1.6, 12.0, -5.0)
    assert np.allclose(fit_similarity(src, transform_points(m, src)), m, atol=1e-3)


def test_points_moved_by_a_similarity_land_on_the_arcface_template():
    # A face whose 5 ArcFace points are exactly the template, then moved into
    # an image by a known similarity: alignment must undo it.
    pts = synthetic_points(0, 0, 0).astype(np.float64)
    five = arcface_points(pts)
    to_template = fit_similarity(five, ARCFACE_112)
    face = transform_points(to_template, pts).astype(np.float64)
    # Make its 5 points exactly the template (the mean face is not the template).
    face[30], face[48], face[54] = ARCFACE_112[2], ARCFACE_112[3], ARCFACE_112[4]
    face[36:42] += ARCFACE_112[0] - face[36:42].mean(0)
    face[42:48] += ARCFACE_112[1] - face[42:48].mean(0)
    moved = transform_points(similarity(25.0, 2.3, 140.0, 60.0), face)
    image = np.zeros((400, 500, 3), np.uint8)
    chip, m = align_face(image, moved, size=112, template="arcface")
    assert chip.shape == (112, 112, 3)
    assert np.abs(arcface_points(transform_points(m, moved)) - ARCFACE_112).max() < 0.5
    # Other sizes scale the template.
    _, m224 = align_face(image, moved, size=224)
    assert np.abs(arcface_points(transform_points(m224, moved)) - 2 * ARCFACE_112).max() < 1.0


def test_arcface_points_put_the_subjects_right_eye_on_the_image_left():
    pts = synthetic_points(0, 0, 0)
    five = arcface_points(pts)
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]   # as in the template (x = 38 before 73)
    m = alignment_matrix(pts, 112, "arcface")
    chip_five = arcface_points(transform_points(m, pts))
    assert np.abs(chip_five - ARCFACE_112).max() < 6    # no mirror: every point near its template spot


def test_matrix_and_inverse_round_trip():
    pts = synthetic_points(20, -10, 15)
    for template in ("arcface", "dlib"):
        m = alignment_matrix(pts, 150, template)
        assert m.shape == (2, 3) and m.dtype == np.float64
        back = transform_points(invert_matrix(m), transform_points(m, pts))
        assert np.abs(back - pts).max() < 0.01


def test_dlib_template_padding_and_gray_images():
    pts = synthetic_points(0, 0, 0)
    gray = np.full((SIZE[0], SIZE[1]), 200, np.uint8)
    chip, m = align_face(gray, pts, size=150, template="dlib")
    assert chip.shape == (150, 150) and chip.dtype == np.uint8
    # More padding: a smaller face in the chip.
    _, m_wide = align_face(gray, pts, size=150, template="dlib", padding=0.5)
    span = lambda mm: np.ptp(transform_points(mm, pts)[:, 0])  # noqa: E731
    assert span(m_wide) < span(m)
    # dlib's template is level and symmetric: a frontal face comes out level and centred.
    cp = transform_points(m, pts)
    assert abs(eye_angle(cp)) < 0.5 and abs(cp[30, 0] - 0.49 * 150) < 3
    with pytest.raises(ValueError):
        align_face(gray, pts[:5])
    with pytest.raises(ValueError):
        template_points("nope", 112)


# ---------------------------------------------------------------- pose

@pytest.mark.parametrize("angles", [(0, 0, 0), (60, 0, 0), (-60, 0, 0), (0, 30, 0), (0, -30, 0),
                                    (0, 0, 30), (0, 0, -30), (45, -20, 25), (-30, 25, -15)])
def test_synthetic_projections_are_recovered_within_1_degree(angles):
    pose = estimate_pose(synthetic_points(*angles), SIZE)
    assert np.allclose([pose.yaw, pose.pitch, pose.roll], angles, atol=1.0), (pose, angles)
    assert pose.rotation.shape == (3,) and pose.translation.shape == (3,)
    assert np.allclose(pose.translation, [0.3, -0.2, DISTANCE], atol=0.05)


def test_sign_convention():
    # Turning the 3-D face with the documented signs moves the nose tip as
    # the module docstring says; estimate_pose reads the same signs back.
    shape = load_face_shape()
    assert shape[30, 2] < shape[[36, 45], 2].mean()     # nose tip nearer the camera than the eyes
    k = default_camera(SIZE)
    front = project_shape(np.eye(3), [0, 0, DISTANCE], k)

    def nose_shift(yaw=0.0, pitch=0.0):
        p = project_shape(rotation_from_angles(yaw, pitch, 0), [0, 0, DISTANCE], k)
        return (p[30] - p[27:36].mean(0)) - (front[30] - front[27:36].mean(0))

    assert nose_shift(yaw=30)[0] > 0          # yaw > 0: the nose moves to the image right
    assert nose_shift(pitch=20)[1] < 0        # pitch > 0: the nose moves up
    p = synthetic_points(0, 0, 20)
    assert eye_angle(p) < -10                 # roll > 0: counter-clockwise, right eye (image left) lower
    turned_right = synthetic_points(35, 0, 0)
    assert turned_right[30, 0] > turned_right[[36, 45], 0].mean()
    assert estimate_pose(turned_right, SIZE).yaw > 30


def test_mirroring_flips_yaw_and_roll():
    for angles in [(25, 10, 12), (-40, -15, 5)]:
        pts = synthetic_points(*angles, offset=(0.0, 0.0))
        a = estimate_pose(pts, SIZE)
        b = estimate_pose(mirror_points(pts, SIZE[1]), SIZE)
        assert abs(a.yaw + b.yaw) < 0.1 and abs(a.roll + b.roll) < 0.1 and abs(a.pitch - b.pitch) < 0.1


def test_in_plane_image_rotation_adds_to_roll():
    h, w = SIZE
    pts = synthetic_points(20, -10, 5)
    rot = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 20.0, 1.0)   # +20: counter-clockwise
    a = estimate_pose(pts, SIZE)
    b = estimate_pose(transform_points(rot, pts), SIZE)
    assert abs((b.roll - a.roll) - 20.0) < 0.2 and abs(b.yaw - a.yaw) < 0.2


def test_face_shape_is_symmetric_and_in_its_stated_units():
    s = load_face_shape()
    assert s.shape == (68, 3)
    mirrored = s[list(FLIP_PERMUTATION_68)] * [-1, 1, 1]
    assert np.abs(s - mirrored).max() < 1e-4
    assert abs(np.linalg.norm(s[45] - s[36]) - 1.0) < 1e-3 and np.allclose(s[30], 0)
    assert s[8, 1] > 0 > s[27, 1]             # chin below the nose tip, nose root above


# ---------------------------------------------------------------- on a real portrait

@pytest.fixture(scope="module")
def portrait():
    from common.predictor import FaceLandmarker, prepare_image
    fl = FaceLandmarker(weights=str(FACE_WEIGHTS), device="cpu", pose=True)
    rgb, _ = prepare_image(portrait_path())
    return fl, rgb


def rotate_image(rgb: np.ndarray, angle: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.warpAffine(rgb, cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0), (w, h))


@needs_face_weights
def test_portrait_is_near_frontal_and_json_carries_the_pose(portrait):
    from common.predictor import face_to_dict
    fl, rgb = portrait
    faces = fl.detect_landmarks(rgb)
    assert len(faces) == 1
    pose = faces[0].pose
    assert abs(pose.yaw) < 10 and abs(pose.pitch) < 15 and abs(pose.roll) < 8, pose
    faces[0].chip = {"path": "chips/face_0.png", "matrix": alignment_matrix(faces[0].points)}
    doc = face_to_dict(faces[0])
    assert set(doc["pose"]) == {"yaw", "pitch", "roll", "rotation", "translation"}
    assert len(doc["pose"]["rotation"]) == 3 and len(doc["pose"]["translation"]) == 3
    assert doc["chip"]["path"] == "chips/face_0.png" and np.shape(doc["chip"]["matrix"]) == (2, 3)
    fl.pose = False
    assert "pose" not in face_to_dict(fl.detect_landmarks(rgb)[0])
    fl.pose = True


@needs_face_weights
def test_rotated_portrait_gives_a_level_chip(portrait):
    fl, rgb = portrait
    upright = fl.detect_landmarks(rgb)[0]
    rotated = rotate_image(rgb, 30.0)
    face = fl.detect_landmarks(rotated)[0]
    assert eye_angle(face.points) < -20                           # the eyes really are tilted
    assert abs((face.pose.roll - upright.pose.roll) - 30.0) < 3.0
    chip, m = align_face(rotated, face.points, size=150, template="dlib")
    assert abs(eye_angle(transform_points(m, face.points))) < 1.0
    # ArcFace's 5-point fit also weighs the nose and mouth, so the face's own
    # asymmetry tilts its eye line a little: a looser bound.
    chip, m = align_face(rotated, face.points, size=112, template="arcface")
    assert chip.shape == (112, 112, 3)
    assert abs(eye_angle(transform_points(m, face.points))) < 2.0


@needs_face_weights
def test_draw_pose_axes_on_the_portrait(portrait):
    from common.drawing import draw_pose_axes
    fl, rgb = portrait
    face = fl.detect_landmarks(rgb)[0]
    canvas = np.zeros_like(rgb)
    draw_pose_axes(canvas, face.pose, order="rgb")
    nose = np.round(face.points[30]).astype(int)
    assert canvas[..., 0].max() == 255 and canvas[..., 1].max() == 255 and canvas[..., 2].max() == 255
    ys, xs = np.nonzero(canvas.any(axis=2))
    assert np.hypot(xs - nose[0], ys - nose[1]).min() < 3          # the axes start at the nose tip


def test_factorisation_recovers_the_shape_from_orthographic_views():
    import importlib.util
    spec = importlib.util.spec_from_file_location("estimate_face_shape",
                                                  str(REPO / "training" / "tools" / "estimate_face_shape.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    truth = load_face_shape()
    rng = np.random.default_rng(3)
    views = []
    for _ in range(60):
        r = rotation_from_angles(*rng.uniform([-50, -20, -20], [50, 20, 20]))
        views.append(rng.uniform(50, 120) * (truth @ r.T)[:, :2] + rng.uniform(0, 300, 2))
    views = np.array(views)
    raw, residual = mod.factorise(views)
    shape, asym = mod.canonical_frame(raw)
    assert residual < 1e-6 and asym < 1e-4
    shape, _ = mod.level_pitch(shape, views)
    truth_level, _ = mod.level_pitch(truth, views)
    assert np.abs(shape - truth_level).max() < 1e-3
    assert shape[30, 2] == 0 and shape[[36, 45], 2].mean() > 0.2   # nose tip in front of the eyes


def test_face_shape_refuses_a_final_fit_as_split_source(ckpts, tiny_face_set, tmp_path):
    """estimate_face_shape.py --split-from a final fit (it held no faces out): refused before any output; its
    twin (a held-out split) is taken."""
    import importlib.util
    import torch
    from common.errors import InputError
    spec = importlib.util.spec_from_file_location("estimate_face_shape",
                                                  str(REPO / "training" / "tools" / "estimate_face_shape.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ckpt = torch.load(ckpts["face"], weights_only=True)
    paths = {}
    for name, fraction in (("final", 0.0), ("twin", 0.3)):
        ckpt["config"] = {"data": [tiny_face_set["train"]], "val_fraction": fraction, "split_seed": 0}
        paths[name] = str(tmp_path / f"{name}.pt")
        torch.save(ckpt, paths[name])
    out = tmp_path / "shape.csv"
    parser = mod.get_args_parser()
    with pytest.raises(InputError, match="a final fit"):
        mod.main(parser.parse_args([str(out), "--data", tiny_face_set["train"], "--split-from", paths["final"]]))
    assert not out.exists()
    mod.main(parser.parse_args([str(out), "--data", tiny_face_set["train"], "--split-from", paths["twin"]]))
    assert "held-out faces left out" in out.read_text()
