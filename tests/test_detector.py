"""The detectors look for faces from ``min_face`` pixels up, on a copy
scaled so that such a face fills their smallest window; MTCNN's cascade and
weights file."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from common.detector import (DEFAULT_DETECTOR, DETECT_MAX_SIDE, DETECTORS, MIN_FACE, MTCNN_WEIGHTS, HaarDetector,
                             MtcnnDetector, make_detector)
from common.errors import DetectorError
from common.images import read_image
from common.mtcnn import NETS, Mtcnn, crops, load_weights, nms, to_square
from inference_helpers import REPO, portrait_path, run_predict


def test_detect_scale_follows_min_face_and_max_side():
    d = HaarDetector(min_face=48)
    assert d.detect_scale(600, 512) == pytest.approx(24 / 48)
    assert HaarDetector(min_face=12).detect_scale(600, 512) == 1.0           # never upscaled
    big = DETECT_MAX_SIDE * 4
    assert HaarDetector(min_face=24).detect_scale(big, big) == pytest.approx(0.25)


@pytest.mark.parametrize("name", ["blazeface", "mtcnn", "haar"])
def test_min_face_decides_which_faces_are_found(name):
    rgb = read_image(portrait_path())
    faces = make_detector(name).detect(rgb)
    assert len(faces) == 1
    side = faces[0].box[2] - faces[0].box[0]
    assert side > MIN_FACE
    # Looking only for faces larger than this one finds nothing; the boxes
    # are in full-size pixels whatever the detection scale.
    assert make_detector(name, min_face=1.5 * side).detect(rgb) == []
    small = make_detector(name, min_face=0.5 * side).detect(rgb)
    assert len(small) == 1
    assert np.abs(small[0].box - faces[0].box).max() < 0.15 * side


@pytest.mark.parametrize("bad", [0, -5])
def test_min_face_must_be_positive(bad):
    with pytest.raises(DetectorError, match="positive"):
        make_detector("haar", min_face=bad)
    r = run_predict(portrait_path(), "--min-face", str(bad), "--json", "-")
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "positive" in r.stderr


def test_min_face_defaults_to_min_face():
    from common.predict_cli import get_args_parser
    args = get_args_parser().parse_args(["pic.jpg"])
    assert make_detector(args.detector, args.detector_model, args.min_face).min_face == MIN_FACE


def test_every_detector_name_is_known_to_make_detector():
    assert DEFAULT_DETECTOR in DETECTORS
    for name in DETECTORS:
        try:
            make_detector(name)
        except DetectorError as exc:  # yunet: the user supplies its model file
            assert "--detector-model" in str(exc)
    with pytest.raises(DetectorError, match="want one of blazeface, mtcnn, haar, yunet"):
        make_detector("hog")


def test_mtcnn_finds_the_portrait_face_with_five_plausible_points():
    rgb = read_image(portrait_path())
    boxes, scores, points = Mtcnn(load_weights(MTCNN_WEIGHTS)).detect(rgb, 40)
    assert boxes.shape == (1, 4) and scores[0] > 0.99 and points.shape == (1, 5, 2)
    (x0, y0, x1, y1), p = boxes[0], points[0]
    assert 100 < x1 - x0 < 300 and 0.6 < (x1 - x0) / (y1 - y0) < 1.0  # a little taller than wide
    assert np.all((p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1))
    eyes, nose, mouth = p[0:2], p[2], p[3:5]
    assert eyes[0, 0] < nose[0] < eyes[1, 0] and mouth[0, 0] < nose[0] < mouth[1, 0]  # left to right
    assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()                             # top to bottom


def test_mtcnn_onnx_exports_are_cached_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    """The exports land in FACE_LANDMARKS_CACHE; the next start reads them
    instead of exporting, a damaged file is replaced, an unwritable cache only
    costs the export, and every way finds the same face."""
    pytest.importorskip("onnxruntime")
    import common.mtcnn as mtcnn_module
    rgb = read_image(portrait_path())
    state = load_weights(MTCNN_WEIGHTS)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACE_LANDMARKS_CACHE", str(cache))
    first = Mtcnn(state)
    assert first.backend == "onnx" and len(list(cache.glob("mtcnn-*.onnx"))) == 3
    want = first.detect(rgb, 40)[0]

    exports = []
    real_export = mtcnn_module._export
    monkeypatch.setattr(mtcnn_module, "_export", lambda net, i: exports.append(i) or real_export(net, i))
    assert Mtcnn(state).backend == "onnx" and exports == []               # read back, nothing exported
    onet = next(cache.glob("mtcnn-onet-*.onnx"))
    onet.write_bytes(b"not an onnx model")
    np.testing.assert_allclose(Mtcnn(state).detect(rgb, 40)[0], want, atol=1e-3)
    assert exports == [2] and onet.stat().st_size > 1000                   # rebuilt in place

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("FACE_LANDMARKS_CACHE", str(blocked / "sub"))       # cannot be created
    np.testing.assert_allclose(Mtcnn(state).detect(rgb, 40)[0], want, atol=1e-3)


def test_r_and_o_net_tell_the_face_from_background():
    rgb = read_image(portrait_path())
    net = Mtcnn(load_weights(MTCNN_WEIGHTS))
    face = to_square(net.detect(rgb, 40)[0])
    background = np.array([[0, 0, 120, 120], [380, 450, 500, 570], [0, 400, 150, 550]], np.float32)
    boxes = np.concatenate([face, background])
    for net_, size in ((net.nets[1], 24), (net.nets[2], 48)):
        prob = net._run(net_, crops(rgb, boxes, size))[0]
        assert prob[0] > 0.99 and prob[1:].max() < 0.2


def test_mtcnn_candidates_shrink_with_min_face():
    """P-Net's pyramid starts where a ``min_size`` face fills its 12 px window."""
    net = Mtcnn(load_weights(MTCNN_WEIGHTS))
    scales = net.pyramid_scales(600, 512, 40)
    assert scales[0] == pytest.approx(12 / 40) and 512 * scales[-1] >= 12 > 512 * scales[-1] * 0.709
    assert len(net.pyramid_scales(600, 512, 80)) < len(scales)


def test_nms_union_and_min_overlap():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [2, 2, 6, 6]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    # IoU(0, 1) = 0.82 suppresses box 1; the small box 3 overlaps box 0 by
    # IoU 0.16 but lies wholly inside it (overlap 1.0 over the smaller box).
    assert sorted(nms(boxes, scores, 0.5).tolist()) == [0, 2, 3]
    assert sorted(nms(boxes, scores, 0.5, mode="min").tolist()) == [2, 3]
    assert nms(boxes, scores, 0.9).tolist() == [3, 0, 1, 2]  # best first


def test_bad_mtcnn_weights_give_one_line_errors(tmp_path):
    truncated = tmp_path / "mtcnn.pt"
    truncated.write_bytes(open(MTCNN_WEIGHTS, "rb").read()[:5000])
    cases = [(tmp_path / "missing.pt", "not found"), (truncated, "could not read"),
             (REPO / "weights" / "face.pt", "not an MTCNN weights file")]
    for path, message in cases:
        with pytest.raises(DetectorError, match=message):
            MtcnnDetector(str(path))
    r = run_predict(portrait_path(), "--detector-model", str(truncated), "--json", "-")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "could not read" in r.stderr


def fake_facenet_wheel(path, state):
    """A zip laid out like the facenet-pytorch wheel, holding ``state``'s nets."""
    with zipfile.ZipFile(path, "w") as z:
        for name in NETS:
            with z.open(f"facenet_pytorch/data/{name}.pt", "w") as f:
                torch.save(state[name], f)


def test_import_mtcnn_rebuilds_the_weights_file(tmp_path):
    state = load_weights(MTCNN_WEIGHTS)
    wheel = tmp_path / "facenet_pytorch-0-py3-none-any.whl"
    fake_facenet_wheel(wheel, state)
    out = tmp_path / "mtcnn.pt"
    cmd = [sys.executable, str(REPO / "training" / "tools" / "import_mtcnn.py"), str(wheel), "--output", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rebuilt = load_weights(str(out))
    for name in NETS:
        assert rebuilt[name].keys() == state[name].keys()
        assert all(torch.equal(rebuilt[name][k], state[name][k]) for k in state[name])
    assert rebuilt["source"].startswith(wheel.name) and set(rebuilt["sha256"]) == set(NETS)
    again = subprocess.run(cmd, capture_output=True, text=True)       # never overwrites unasked
    assert again.returncode == 2 and "exists" in again.stderr
    not_a_wheel = tmp_path / "x.whl"
    not_a_wheel.write_text("hello")
    bad = subprocess.run(cmd[:2] + [str(not_a_wheel), "--output", str(tmp_path / "y.pt")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
