"""Landmark schemes other than the 68 iBUG points: the built-in ones, schemes
taken from the data (5 and 98 points in every reader's format), training,
reloading, predicting K points, mirroring, and the face-only features'
refusal."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import synthetic as S
from common import readers as D
from common import training
from common.detector import MTCNN_CALIBRATION, to_landmark_box
from common.drawing import draw_faces
from common.errors import DatasetFormatError, InputError
from common.images import read_image
from common.landmark_model import LandmarkModel
from common.landmarks import FLIP_PERMUTATION_68, landmark_box
from common.metrics import nme_per_face
from common.predictor import FaceResult
from common.schemes import (BUILTIN, EYES12, IBUG68, WFLW98, WFLW98_TO_IBUG68, Scheme, check_permutation,
                            detector_calibration, infer_flip, measure_crop, read_flip_file, require_ibug68,
                            resolve_scheme, scheme_of)
from common.transforms import crop_region, mirror
from conftest import REPO_ROOT
from inference_helpers import portrait_path


def _faces(n, seed=0):
    rng = np.random.default_rng(seed)
    return [S.make_face(rng)[1] for _ in range(n)]


# --- scheme facts ---------------------------------------------------------------------------

def test_builtin_schemes_are_mirror_pairings_and_survive_a_checkpoint(tmp_path):
    for s in BUILTIN.values():
        check_permutation(s.flip, s.num_points, s.name)
        d = s.to_dict()
        torch.save({"scheme": d}, tmp_path / "s.pt")
        back = torch.load(tmp_path / "s.pt", weights_only=True)["scheme"]   # plain values only
        assert Scheme.from_dict(back) == s
    assert IBUG68.norm == (36, 45) and WFLW98.norm == (60, 72) and EYES12.norm == (0, 9)
    # Checkpoints written before schemes existed.
    assert scheme_of({"task": "face", "landmark_indices": list(range(68))}) == IBUG68
    assert scheme_of({"task": "eyes", "landmark_indices": list(range(36, 48))}) == EYES12


def test_wflw_permutation_and_98_to_68_mapping_agree_with_an_independent_description():
    assert WFLW98.flip == S.WFLW_FLIP
    # The mapping sends mirror partners to mirror partners ...
    assert all(WFLW98_TO_IBUG68[FLIP_PERMUTATION_68[i]] == WFLW98.flip[WFLW98_TO_IBUG68[i]] for i in range(68))
    # ... and picks the 68 points out of the synthetic 98 (built by hand from them).
    for p in _faces(3):
        np.testing.assert_array_equal(S.wflw98_points(p)[list(WFLW98_TO_IBUG68)], p)


def test_flip_permutation_inferred_from_the_mean_shape():
    faces = _faces(24, seed=3)
    assert infer_flip([S.five_points(p) for p in faces]) == S.FIVE_FLIP
    assert infer_flip([S.wflw98_points(p) for p in faces]) == WFLW98.flip
    assert infer_flip(faces) == FLIP_PERMUTATION_68


def test_mirroring_twice_is_the_identity_for_any_scheme():
    img = np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)
    for pts, perm in ((S.five_points(_faces(1)[0]), S.FIVE_FLIP), (S.wflw98_points(_faces(1)[0]), WFLW98.flip)):
        i1, p1 = mirror(img, pts, perm)
        i2, p2 = mirror(i1, p1, perm)
        np.testing.assert_array_equal(i2, img)
        np.testing.assert_allclose(p2, pts, atol=1e-5)
        assert p1[perm[0], 0] == pytest.approx(49 - pts[0, 0], abs=1e-5)


def test_flip_file_and_bad_permutations(tmp_path, capsys):
    recs = [D.FaceRecord("x", S.five_points(p), group=f"g{i}") for i, p in enumerate(_faces(8))]
    f = tmp_path / "five.json"
    f.write_text(json.dumps({"flip_permutation": [1, 0, 2, 4, 3], "name": "five", "normalisation": [0, 1],
                             "lines": [[0, 2, 1], [3, 4]]}))
    s = resolve_scheme(recs, [str(tmp_path / "d.xml")], flip_file=str(f))
    assert (s.name, s.num_points, s.flip, s.norm) == ("five", 5, S.FIVE_FLIP, (0, 1))
    assert "flip permutation" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text("1 0 2 3 3")
    with pytest.raises(InputError, match="each of 0-4 once"):
        resolve_scheme(recs, ["d.xml"], flip_file=str(tmp_path / "bad.txt"))
    (tmp_path / "bad.txt").write_text("1 2 0 3 4")
    with pytest.raises(InputError, match="not a mirror pairing"):
        resolve_scheme(recs, ["d.xml"], flip_file=str(tmp_path / "bad.txt"))
    mixed = recs + [D.FaceRecord("y", _faces(1)[0], group="z")]
    with pytest.raises(DatasetFormatError, match="mix point counts"):
        resolve_scheme(mixed, ["d.xml"])



def test_the_documented_scheme_file_example(tmp_path, capsys):
    """docs/five_points.scheme.json parses with the reader, is found beside
    its data set, and is the file docs/custom_schemes.md shows."""
    example = os.path.join(REPO_ROOT, "docs", "five_points.scheme.json")
    info = read_flip_file(example, 5)
    assert info["flip_permutation"] == S.FIVE_FLIP
    doc = open(os.path.join(REPO_ROOT, "docs", "custom_schemes.md"), encoding="utf-8").read()
    shown = doc.split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(shown) == json.load(open(example, encoding="utf-8"))
    recs = [D.FaceRecord("x", S.five_points(p), group=f"g{i}") for i, p in enumerate(_faces(8))]
    beside = tmp_path / "five_points.scheme.json"
    beside.write_bytes(open(example, "rb").read())
    s = resolve_scheme(recs, [str(tmp_path / "five_points.xml")])
    assert (s.name, s.num_points, s.flip, s.norm) == ("five", 5, S.FIVE_FLIP, (0, 1))
    assert dict(s.regions) == {"right_eye": (0,), "left_eye": (1,), "nose": (2,), "mouth": (3, 4)}
    assert s.lines == (((0, 2, 1), False), ((3, 4), False))
    assert str(beside) in capsys.readouterr().err
FIVE_NAMES = {"right_eye_centre": 0, "left_eye_centre": 1, "nose_tip": 2, "mouth_right": 3, "mouth_left": 4}


def test_scheme_file_names_points_checked_against_mirroring_and_sides(tmp_path, capsys):
    recs = [D.FaceRecord("x", S.five_points(p), group=f"g{i}") for i, p in enumerate(_faces(8))]
    f = tmp_path / "five.json"

    def scheme(named):
        f.write_text(json.dumps({"flip_permutation": list(S.FIVE_FLIP), "named_points": named}))
        return resolve_scheme(recs, [str(tmp_path / "d.xml")], flip_file=str(f))
    s = scheme(FIVE_NAMES)
    assert dict(s.named) == FIVE_NAMES and s.arcface_groups() == ((0,), (1,), (2,), (3,), (4,))
    assert Scheme.from_dict(json.loads(json.dumps(s.to_dict()))) == s   # a checkpoint keeps the names
    with pytest.raises(InputError, match="unknown point name 'nose'"):
        scheme({**FIVE_NAMES, "nose": 2})
    with pytest.raises(InputError, match="mirroring takes mouth_right \\(point 3\\) to point 4, but mouth_left is point 3"):
        scheme({**FIVE_NAMES, "mouth_left": 3})
    swapped = {**FIVE_NAMES, "right_eye_centre": 1, "left_eye_centre": 0}   # mirror-consistent, but sides swapped
    with pytest.raises(DatasetFormatError, match="right_eye_centre \\(point 1\\) lies right of left_eye_centre"):
        scheme(swapped)
    assert scheme({"nose_tip": 2}).arcface_groups() is None   # not all five named


def test_arcface_chips_from_five_named_points_or_eye_corners():
    from common.alignment import ARCFACE_112, align_face, alignment_matrix, arcface_points, transform_points
    pts68 = S.face_points(np.random.default_rng(5), 240, 200).astype(np.float32)
    image = np.zeros((240, 200, 3), np.uint8)
    five = Scheme("five", 5, S.FIVE_FLIP, None, named=tuple(FIVE_NAMES.items()))
    # The five points MTCNN-style models give are exactly what the 68-point chip is fitted to: the same chip.
    chip5, m5 = align_face(image, S.five_points(pts68), 112, "arcface", scheme=five)
    chip68, m68 = align_face(image, pts68, 112, "arcface")
    assert chip5.shape == (112, 112, 3)
    np.testing.assert_allclose(m5, m68, atol=1e-3)   # float32 points
    # Eye corners instead of centres (7 points: 36, 39, 42, 45, 30, 48, 54): near the same chip.
    idx = [36, 39, 42, 45, 30, 48, 54]
    corners = Scheme("seven", 7, (3, 2, 1, 0, 4, 6, 5), None, named=(
        ("right_eye_outer", 0), ("right_eye_inner", 1), ("left_eye_inner", 2), ("left_eye_outer", 3),
        ("nose_tip", 4), ("mouth_right", 5), ("mouth_left", 6)))
    m7 = alignment_matrix(pts68[idx], 112, "arcface", scheme=corners)
    assert np.abs(arcface_points(transform_points(m7, pts68)) - arcface_points(transform_points(m68, pts68))).max() < 2
    assert np.abs(arcface_points(transform_points(m5, S.five_points(pts68)), five) - ARCFACE_112).max() < 15
    # A scheme that does not name them, and dlib's template (33 iBUG points), say so in one line.
    unnamed = Scheme("custom5", 5, S.FIVE_FLIP, None)
    with pytest.raises(InputError, match="--chips needs the eye centres \\(or corners\\), nose tip and mouth "
                                         "corners; the 5-point scheme 'custom5' does not name them"):
        align_face(image, S.five_points(pts68), scheme=unnamed)
    with pytest.raises(InputError, match="--chip-template dlib needs the 68 iBUG points"):
        align_face(image, S.five_points(pts68), template="dlib", scheme=five)
    # wflw98 goes through its 68-point mapping, as before.
    np.testing.assert_allclose(alignment_matrix(S.wflw98_points(pts68), scheme=WFLW98), m68, atol=1e-6)


def test_nme_by_box_size_when_there_are_no_eye_corners():
    gt = np.array([[[0, 0], [4, 0], [4, 9]]], np.float64)
    pred = gt + [3, 0]
    assert nme_per_face(pred, gt, None)[0] == pytest.approx(3 / 6)      # sqrt(4 * 9) = 6
    assert nme_per_face(pred, gt, (0, 1))[0] == pytest.approx(3 / 4)


def test_crop_margin_from_face_boxes_and_the_derived_detector_calibration():
    faces = _faces(10, seed=5)
    recs = [D.FaceRecord("x", S.five_points(p), box=landmark_box(p)) for p in faces]
    crop, source = measure_crop(recs, None)
    assert "face boxes" in source
    for p in faces:    # the 5-point crop covers about the crop ibug68 takes around the same face
        r5, r68 = crop_region(crop, landmark_box(S.five_points(p))), crop_region(IBUG68.crop, landmark_box(p))
        assert r5.side == pytest.approx(r68.side, rel=0.1) and r5.cy == pytest.approx(r68.cy, abs=0.1 * r68.side)
    assert measure_crop(recs, 1.0)[0].context == 2.0
    # Uncalibrated: a detector box gives the crop ibug68 would take from it.
    five = Scheme("custom5", 5, S.FIVE_FLIP, None, crop=crop)
    cal, why = detector_calibration(five, "mtcnn", MTCNN_CALIBRATION)
    assert why.startswith("uncalibrated")
    det = np.array([30.0, 40.0, 130.0, 150.0])
    r5 = crop_region(five.crop, to_landmark_box(det, cal))
    r68 = crop_region(IBUG68.crop, to_landmark_box(det, MTCNN_CALIBRATION))
    assert (r5.cx, r5.cy, r5.side) == pytest.approx((r68.cx, r68.cy, r68.side))
    measured = Scheme("custom5", 5, S.FIVE_FLIP, None, crop=crop, calibration={"mtcnn": {"dx": 0, "dy": 0.1,
                                                                                         "scale": 0.5}})
    assert detector_calibration(measured, "mtcnn", MTCNN_CALIBRATION)[0]["scale"] == 0.5
    assert detector_calibration(IBUG68, "mtcnn", MTCNN_CALIBRATION)[0] == MTCNN_CALIBRATION
    with pytest.raises(InputError, match="--pose needs the 68 iBUG points; this model predicts the 5-point "
                                         "scheme 'custom5'"):
        require_ibug68(five, "--pose")
    require_ibug68(WFLW98, "--pose")                  # through the 98 -> 68 mapping


# --- readers --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,k", [("xml5", 5), ("pts98", 98), ("csv5", 5), ("wflw98", 98)])
def test_readers_take_any_number_of_points(tmp_path, fmt, k):
    path = S.synthetic_scheme_dataset(str(tmp_path), 4, seed=1, fmt=fmt, name="set")
    recs = D.read_dataset(path)
    assert len(recs) == 4 and all(r.points.shape == (k, 2) and r.points.dtype == np.float32 for r in recs)
    assert all(os.path.isfile(r.image_path) for r in recs)
    if fmt == "wflw98":
        assert D.dataset_format(path) == "wflw"
        assert recs[1].attributes == {"pose": 0, "expression": 0, "illumination": 0, "make_up": 0,
                                      "occlusion": 1, "blur": 0}
        assert recs[0].box is not None and np.all(recs[0].box[:2] <= recs[0].points.min(0))


def test_readers_reject_a_count_that_differs_within_a_data_set(tmp_path):
    faces = _faces(2)
    S.save_image(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    S.write_dlib_xml(str(tmp_path / "m.xml"), [("a.png", [S.five_points(faces[0]), faces[1]])])
    with pytest.raises(DatasetFormatError, match=r"<box> #2: expected parts 0-4, got 68 parts"):
        D.read_dataset(str(tmp_path / "m.xml"))
    (tmp_path / "w.txt").write_text(" ".join(["1"] * 205) + " a.png\n")
    assert D.dataset_format(str(tmp_path / "w.txt")) == "wflw"
    with pytest.raises(DatasetFormatError, match="line 1: expected 206 numbers and an image path"):
        D.read_dataset(str(tmp_path / "w.txt"))


# --- train, save, reload, predict, mirror ----------------------------------------------------

def _train(tmp_path, fmt, *extra):
    folder = str(tmp_path / "data")
    train = S.synthetic_scheme_dataset(folder, 16, seed=1, fmt=fmt, name="train")
    val = S.synthetic_scheme_dataset(folder, 8, seed=2, fmt=fmt, name="val")
    args = training.get_args_parser().parse_args(
        ["--workers", "0", "--threads", "1", "--device", "cpu", "--batch-size", "8", "--input-size", "32",
         "--epochs", "1", "--data", train, "--val-data", val, "--runs-dir", str(tmp_path / "runs"), *extra])
    result = training.main(args)
    return os.path.join(result["run_dir"], "best.pt"), val


def _check_model(ckpt_path, val, k, name):
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ck["scheme"]["name"] == name and ck["scheme"]["num_points"] == k and len(ck["landmark_indices"]) == k
    model = LandmarkModel(ckpt_path, "face", torch.device("cpu"))
    rec = D.read_dataset(val)[0]
    gray = read_image(rec.image_path, gray=True)
    box = landmark_box(rec.points)
    pts = model.predict_boxes(gray, [box], flip=True)[0]
    assert pts.shape == (k, 2) and np.isfinite(pts).all()
    # The mirrored image's prediction is this one mirrored and re-indexed by the permutation.
    w = gray.shape[1]
    mbox = np.array([w - 1 - box[2], box[1], w - 1 - box[0], box[3]], np.float32)
    mpts = model.predict_boxes(np.ascontiguousarray(gray[:, ::-1]), [mbox], flip=True)[0]
    expect = pts.copy()
    expect[:, 0] = w - 1 - expect[:, 0]
    np.testing.assert_allclose(mpts, expect[list(model.scheme.flip)], atol=1e-3)
    return model


@pytest.mark.parametrize("fmt,k,name", [("pts98", 98, "wflw98"), ("csv5", 5, "custom5"),
                                        ("wflw98", 98, "wflw98")])
def test_train_reload_predict_and_mirror(tmp_path, capsys, fmt, k, name):
    ckpt, val = _train(tmp_path, fmt)
    _check_model(ckpt, val, k, name)
    if k == 5:
        assert "flip permutation (inferred by mirroring the mean shape): 0<->1 2 3<->4" in capsys.readouterr().err


@pytest.fixture(scope="module")
def five_point_model(tmp_path_factory):
    """A 5-point model trained for one epoch on a dlib XML whose faces have 5 parts."""
    tmp = tmp_path_factory.mktemp("five")
    ckpt, val = _train(tmp, "xml5")
    return ckpt, val


def test_five_part_xml_trains_a_five_point_model(five_point_model):
    ckpt, val = five_point_model
    model = _check_model(ckpt, val, 5, "custom5")
    assert model.scheme.flip == S.FIVE_FLIP and model.scheme.norm is None


def test_predict_puts_five_points_on_the_portrait_and_refuses_pose(five_point_model, tmp_path):
    ckpt, _ = five_point_model
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    cmd = [sys.executable, os.path.join(REPO_ROOT, "inference", "predict.py"), portrait_path(), "--weights", ckpt,
           "--device", "cpu"]
    out = subprocess.run(cmd + ["--output", str(tmp_path / "out"), "--lines", "--json", str(tmp_path / "p.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "p.json").read_text())
    faces = doc["images"][0]["faces"]
    assert doc["scheme"] == "custom5" and len(faces) == 1
    assert len(faces[0]["points"]) == 5 and all(len(p) == 2 for p in faces[0]["points"])
    assert "uncalibrated" in out.stderr
    assert os.path.isfile(tmp_path / "out" / "grace_hopper_landmarks.jpg")
    bad = subprocess.run(cmd + ["--pose", "--no-save", "--json", "-"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: --pose needs the 68 iBUG points; this model predicts the 5-point scheme 'custom5'")
    # Chips: its five points are unnamed (no scheme file) ...
    bad = subprocess.run(cmd + ["--chips", str(tmp_path / "chips"), "--no-save", "--json", "-"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stdout == "" and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith(
        "error: --chips needs the eye centres (or corners), nose tip and mouth corners; the 5-point scheme 'custom5'")
    # ... named (as a scheme file's "named_points" would have them), they make ArcFace chips.
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    ck["scheme"]["named_points"] = FIVE_NAMES
    named = str(tmp_path / "named5.pt")
    torch.save(ck, named)
    out = subprocess.run(cmd[:3] + ["--weights", named, "--device", "cpu", "--chips", str(tmp_path / "chips"),
                                    "--no-save", "--json", str(tmp_path / "c.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    face = json.loads((tmp_path / "c.json").read_text())["images"][0]["faces"][0]
    chip = read_image(face["chip"]["path"])
    assert chip.shape == (112, 112, 3) and chip.any()
    from common.alignment import alignment_matrix, transform_points
    pts = np.array(face["points"])   # rounded to 0.01 px in the JSON
    fitted = alignment_matrix(pts, scheme=Scheme.from_dict(ck["scheme"]))
    assert np.abs(transform_points(face["chip"]["matrix"], pts) - transform_points(fitted, pts)).max() < 0.5


def test_evaluate_a_five_point_model(five_point_model, capsys):
    sys.path.insert(0, os.path.join(REPO_ROOT, "inference"))
    import evaluate
    ckpt, val = five_point_model
    args = evaluate.get_args_parser().parse_args(["--weights", ckpt, "--data", val, "--device", "cpu",
                                                  "--ced", os.path.join(os.path.dirname(ckpt), "ced.png")])
    assert evaluate.main(args) == 0
    assert "n=8" in capsys.readouterr().out.splitlines()[-1]


def test_drawing_any_scheme():
    img = np.zeros((60, 80, 3), np.uint8)
    pts98 = S.wflw98_points(_faces(1)[0])
    face = FaceResult(np.array([5, 5, 70, 55], np.float32), landmark_box(pts98), None, pts98)
    draw_faces(img, [face], lines=True, scheme=WFLW98)
    assert img.any()
    img5 = np.zeros_like(img)
    face.points = S.five_points(_faces(1)[0])
    draw_faces(img5, [face], boxes=False)
    assert img5.any()
