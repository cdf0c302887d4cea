"""BlazeFace: the network's outputs line up with its anchors, it finds the
portrait's face where MTCNN does and no face on blank images, both backends
agree, bad weights give one-line errors, and the importer fills every layer
from the model file's convolutions and refuses a graph that does not fit."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from common.blazeface import (BLOCKS, NATIVE, BlazeFace, BlazeFaceNet, anchors, level_scales, load_weights,
                              weighted_nms)
from common.detector import BLAZEFACE_WEIGHTS, BlazeFaceDetector, iou, make_detector
from common.errors import DetectorError, UserError
from common.images import read_image
from inference_helpers import REPO, portrait_path

sys.path.insert(0, str(REPO / "training" / "tools"))
import import_blazeface  # noqa: E402


def test_outputs_follow_the_anchor_layout_at_any_size():
    net = BlazeFaceNet().eval()
    for h, w in ((128, 128), (64, 96), (160, 48)):
        with torch.inference_mode():
            logits, reg = net(torch.zeros(2, 3, h, w))
        n = (h // 8) * (w // 8) * 2 + (h // 16) * (w // 16) * 6
        assert logits.shape == (2, n) and reg.shape == (2, n, 16) and anchors(h, w).shape == (n, 2)
    a = anchors(32, 48)
    assert a[:2].tolist() == [[4, 4], [4, 4]] and a[2].tolist() == [12, 4]   # stride 8, two per cell
    assert a[4 * 6 * 2:4 * 6 * 2 + 6].tolist() == [[8, 8]] * 6                # then stride 16, six per cell


def test_level_scales_end_where_the_image_fits_the_native_size():
    assert level_scales(100, 120) == [1.0]
    scales = level_scales(300, 1200)
    assert scales[0] == 1.0 and 1200 * scales[-1] == pytest.approx(NATIVE)
    assert all(a / b <= 4.0 + 1e-9 for a, b in zip(scales, scales[1:]))


def test_weighted_nms_blends_overlapping_boxes_and_keeps_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    points[1] += 4
    b, s, p = weighted_nms(boxes, scores, points)
    assert s.tolist() == pytest.approx([0.9, 0.8])
    np.testing.assert_allclose(b[0], [0.5, 0, 10.5, 10], atol=1e-5)   # 0.75 of the first, 0.25 of the second
    np.testing.assert_allclose(p[0], 1.0, atol=1e-5)
    np.testing.assert_allclose(b[1], boxes[2])


def test_finds_the_portrait_face_where_mtcnn_does():
    rgb = read_image(portrait_path())
    faces = make_detector("blazeface").detect(rgb)
    mtcnn = make_detector("mtcnn").detect(rgb)
    assert len(faces) == 1 and faces[0].score > 0.9
    # Calibrated boxes (the crop the landmark model gets) agree closely.
    assert iou(faces[0].face_box, mtcnn[0].face_box) > 0.8


def test_a_shifted_image_gives_a_shifted_box():
    """Anchors and decoding in input pixels: moving the image by a whole
    number of grid cells moves the box by as much."""
    net = BlazeFace(load_weights(BLAZEFACE_WEIGHTS), backend="torch")
    import cv2
    rgb = cv2.resize(read_image(portrait_path()), (128, 150), interpolation=cv2.INTER_AREA)
    shifted = np.zeros((150 + 32, 128 + 48, 3), np.uint8)
    shifted[32:, 48:] = rgb
    (a, sa, pa), (b, sb, pb) = net.detect_level(rgb), net.detect_level(shifted)
    best_a, best_b = np.argmax(sa), np.argmax(sb)
    assert sa[best_a] > 0.8 and sb[best_b] > 0.8
    np.testing.assert_allclose(b[best_b], a[best_a] + [48, 32, 48, 32], atol=0.5)
    np.testing.assert_allclose(pb[best_b], pa[best_a] + [48, 32], atol=0.5)


@pytest.mark.parametrize("kind", ["grey", "noise"])
def test_no_face_on_a_blank_image(kind):
    rng = np.random.default_rng(0)
    rgb = (np.full((480, 640, 3), 128, np.uint8) if kind == "grey" else
           rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    assert make_detector("blazeface").detect(rgb) == []


def test_onnx_and_torch_backends_agree_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import common.blazeface as B
    monkeypatch.setenv("FACE_LANDMARKS_CACHE", str(tmp_path))
    rgb = read_image(portrait_path())
    state = load_weights(BLAZEFACE_WEIGHTS)
    onnx = BlazeFace(state)
    assert onnx.backend == "onnx" and len(list(tmp_path.glob("blazeface-*.onnx"))) == 1
    want = BlazeFace(state, backend="torch").detect(rgb)
    got = onnx.detect(rgb)
    np.testing.assert_allclose(got[0], want[0], atol=1e-2)
    cached = next(tmp_path.glob("blazeface-*.onnx"))
    cached.write_bytes(b"not an onnx model")
    exports = []
    real = B._export
    monkeypatch.setattr(B, "_export", lambda net: exports.append(1) or real(net))
    np.testing.assert_allclose(BlazeFace(state).detect(rgb)[0], want[0], atol=1e-2)
    assert exports == [1] and cached.stat().st_size > 1000


def test_bad_weights_give_one_line_errors(tmp_path):
    truncated = tmp_path / "blazeface.pt"
    truncated.write_bytes(open(BLAZEFACE_WEIGHTS, "rb").read()[:5000])
    for path, message in [(tmp_path / "missing.pt", "not found"), (truncated, "could not read"),
                          (REPO / "weights" / "mtcnn.pt", "not a BlazeFace weights file")]:
        with pytest.raises(DetectorError, match=message):
            BlazeFaceDetector(str(path))


def tflite_layers(state: dict) -> list[dict]:
    """The shipped weights as ``import_blazeface.conv_layers`` reads them from
    the model file: TFLite layouts, graph order, TFLite's names and options."""
    out = []
    names = [k[:-len(".weight")] for k in state if k.endswith(".weight")]
    for name in names:
        w = state[f"{name}.weight"].float().numpy()
        depthwise = ".dw" in name
        stride = 2 if name == "stem" else BLOCKS[int(name.split(".")[1])][2] if depthwise else 1
        out.append({"name": {"cls": "classificator", "reg": "regressor"}.get(name[:3], "conv2d") + "/Kernel",
                    "depthwise": depthwise, "stride": stride, "same": True, "relu": False,
                    "weight": w.transpose(1, 2, 3, 0) if depthwise else w.transpose(0, 2, 3, 1),
                    "bias": state[f"{name}.bias"].float().numpy()})
    return out


def test_importer_fills_every_layer_and_refuses_a_graph_that_does_not_fit():
    shipped = load_weights(BLAZEFACE_WEIGHTS)["net"]
    rebuilt = import_blazeface.state_dict(tflite_layers(shipped))
    assert rebuilt.keys() == shipped.keys()
    assert all(torch.equal(rebuilt[k], shipped[k]) for k in shipped)
    layers = tflite_layers(shipped)
    layers[3]["stride"] = 2  # block 1's depthwise convolution keeps the size
    with pytest.raises(UserError, match="does not match"):
        import_blazeface.state_dict(layers)
    with pytest.raises(UserError, match="convolutions"):
        import_blazeface.state_dict(tflite_layers(shipped)[:-1])


def test_importer_errors_are_one_line(tmp_path):
    not_a_wheel = tmp_path / "x.whl"
    not_a_wheel.write_text("hello")
    empty_wheel = tmp_path / "mediapipe-0-py3-none-any.whl"
    import zipfile
    with zipfile.ZipFile(empty_wheel, "w") as z:
        z.writestr("mediapipe/__init__.py", "")
    script = str(REPO / "training" / "tools" / "import_blazeface.py")
    for wheel, message in ((not_a_wheel, "cannot open"), (empty_wheel, "has no mediapipe/modules")):
        r = subprocess.run([sys.executable, script, str(wheel), "--output", str(tmp_path / "b.pt")],
                           capture_output=True, text=True)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr
    taken = subprocess.run([sys.executable, script, str(empty_wheel), "--output", BLAZEFACE_WEIGHTS],
                           capture_output=True, text=True)
    assert taken.returncode == 2 and "exists" in taken.stderr


def test_a_face_cut_through_the_middle_is_missed_as_the_model_card_says():
    """The limitation stated in weights/README.md (Evaluation): the portrait
    cut at the nose keeps its face for MTCNN, not for BlazeFace."""
    rgb = read_image(portrait_path())
    (face,) = make_detector("mtcnn").detect(rgb)
    half = np.ascontiguousarray(rgb[:, :int((face.box[0] + face.box[2]) / 2)])
    assert len(make_detector("mtcnn").detect(half)) == 1
    assert make_detector("blazeface").detect(half) == []
