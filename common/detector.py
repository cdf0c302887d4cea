"""Face detectors behind one small interface, and the conversion of a
detector's box to the landmark-box convention that training used.

Add a backend by subclassing :class:`FaceDetector` and implementing
``_detect``; the rest of the toolkit only sees :class:`Detection` lists.
OpenCV is imported inside the functions that use it, so that scripts can
build their ``--help`` from :func:`add_detector_arguments` at no cost.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import DetectorError

# The detectors make_detector knows, and the default.
DETECTORS = ("blazeface", "mtcnn", "haar", "yunet")
DEFAULT_DETECTOR = "blazeface"

# Haar box -> tight landmark box, measured by training/tools/calibrate_detector.py
# on the training part of the 300-W subset (held-out photos excluded):
# centre offset in units of the detector box side, and landmark-box side over
# detector side (medians over matched faces).
HAAR_CALIBRATION = {"dx": 0.007, "dy": 0.148, "scale": 0.884}
# (870 of 970 faces matched with the settings below; interquartile spread
# dx 0.10, dy 0.05, scale 0.10)

# Detection runs on a copy whose longer side is at most this many pixels.
DETECT_MAX_SIDE = 1280
# The smallest face looked for, in pixels of the input image (dlib's HOG
# detector finds faces from about 80 px without upsampling, 40 px with one
# upsampling step). Detection runs on a copy scaled so that a face of this
# size fills the backend's smallest window: smaller faces cost time to look
# for, so a larger value is faster (predict.py --min-face).
MIN_FACE = 40
# Haar cascade settings, chosen with training/tools/tune_detector.py on the 970
# training faces of the 300-W subset (held-out photos excluded), smallest face
# 40 px: the most faces found for few unmatched detections (the measurements:
# docs/history.md).
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBORS = 3
# MTCNN box -> landmark box, measured like HAAR_CALIBRATION (see above).
MTCNN_CALIBRATION = {"dx": 0.012, "dy": 0.131, "scale": 0.805}
# (969 of 970 faces matched, smallest face 40 px; interquartile spread dx 0.03, dy 0.04, scale 0.08)
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
MTCNN_WEIGHTS = os.path.join(WEIGHTS_DIR, "mtcnn.pt")
# BlazeFace box -> landmark box, measured like HAAR_CALIBRATION (see above).
BLAZEFACE_CALIBRATION = {"dx": -0.003, "dy": 0.059, "scale": 0.962}
# (970 of 970 faces matched, smallest face 40 px; interquartile spread dx 0.03, dy 0.05, scale 0.09)
BLAZEFACE_WEIGHTS = os.path.join(WEIGHTS_DIR, "blazeface.pt")


@dataclass
class Detection:
    """A detected face: detector box ``(x0, y0, x1, y1)`` in image pixels,
    the same box in the landmark convention, and a score (None if the
    detector gives none)."""
    box: np.ndarray
    face_box: np.ndarray
    score: float | None = None


def to_landmark_box(box: np.ndarray, calibration: dict) -> np.ndarray:
    """Map a detector box ``(x0, y0, x1, y1)`` to the tight-landmark-box
    convention with a measured centre shift and scale (see module constants)."""
    x0, y0, x1, y1 = [float(v) for v in box]
    side = max(x1 - x0, y1 - y0)
    cx = (x0 + x1) / 2 + calibration["dx"] * side
    cy = (y0 + y1) / 2 + calibration["dy"] * side
    half = calibration["scale"] * side / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def _contains(outer: np.ndarray, inner: np.ndarray, frac: float = 0.8) -> bool:
    ix = max(0.0, min(outer[2], inner[2]) - max(outer[0], inner[0]))
    iy = max(0.0, min(outer[3], inner[3]) - max(outer[1], inner[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return area > 0 and ix * iy / area >= frac


def dedupe(dets: list[Detection], iou_thresh: float = 0.3) -> list[Detection]:
    """Drop duplicates: boxes overlapping a better (higher score, else larger)
    one by IoU over ``iou_thresh``, or lying mostly inside it."""
    def key(d):
        area = (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])
        return (d.score if d.score is not None else 0.0, area)
    kept: list[Detection] = []
    for d in sorted(dets, key=key, reverse=True):
        if all(iou(d.box, k.box) <= iou_thresh and not _contains(k.box, d.box)
               and not _contains(d.box, k.box) for k in kept):
            kept.append(d)
    return sorted(kept, key=lambda d: (d.box[0], d.box[1]))


class FaceDetector:
    """Base class: ``detect(rgb)`` -> deduplicated, plausible detections of
    faces from ``min_face`` pixels up."""
    calibration = {"dx": 0.0, "dy": 0.0, "scale": 1.0}
    window = 24  # the smallest face the backend finds in its own input, pixels
    thread_safe = False  # True: detect() may run in several threads at once

    def __init__(self, min_face: float | None = None):
        min_face = MIN_FACE if min_face is None else min_face
        if not min_face > 0:
            raise DetectorError(f"the smallest face size must be positive, got {min_face}")
        self.min_face = float(min_face)

    def _detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float | None]]:
        raise NotImplementedError

    def detect_scale(self, height: int, width: int) -> float:
        """Scale of the copy that detection runs on: a ``min_face`` face fills
        the backend's window, and the longer side is at most DETECT_MAX_SIDE."""
        return min(1.0, DETECT_MAX_SIDE / max(height, width), self.window / self.min_face)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB ``(H, W, 3)`` uint8 image, detected on a scaled-down
        copy (:meth:`detect_scale`); boxes come back in full-size pixels."""
        import cv2
        h, w = rgb.shape[:2]
        scale = self.detect_scale(h, w)
        small = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        dets = []
        for box, score in self._detect(small):
            box = np.asarray(box, np.float32) / scale
            bw, bh = box[2] - box[0], box[3] - box[1]
            if min(bw, bh) < 0.8 * self.min_face or not 0.5 < bw / max(bh, 1e-6) < 2.0:
                continue  # implausible: tiny or far from square
            dets.append(Detection(box, to_landmark_box(box, self.calibration), score))
        return dedupe(dets)


class HaarDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade (shipped in opencv-python 4.x wheels)."""
    calibration = HAAR_CALIBRATION

    def __init__(self, cascade: str = HAAR_CASCADE,
                 scale_factor: float = HAAR_SCALE_FACTOR, min_neighbors: int = HAAR_MIN_NEIGHBORS,
                 min_face: float | None = None):
        super().__init__(min_face)
        import cv2
        path = cascade if os.path.isfile(cascade) else os.path.join(
            getattr(cv2, "data", None) and cv2.data.haarcascades or "", cascade)
        if not os.path.isfile(path):
            raise DetectorError(f"Haar cascade not found: {path} (opencv-python 5.x wheels do not ship "
                                "cascades; install opencv-python<5 as in the requirements files)")
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise DetectorError(f"could not load Haar cascade {path}")
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors

    def _detect(self, rgb):
        import cv2
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.window, self.window), outputRejectLevels=True)
        return [(np.array([x, y, x + w - 1, y + h - 1], np.float32), float(s))
                for (x, y, w, h), s in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1))]


class YuNetDetector(FaceDetector):
    """OpenCV's YuNet (``cv2.FaceDetectorYN``); the user supplies the ONNX model
    file (face_detection_yunet_*.onnx from the OpenCV model zoo). Its box
    calibration has not been measured here, so boxes are used as they are."""

    window = 16

    def __init__(self, model_path: str, score_threshold: float = 0.7, min_face: float | None = None):
        super().__init__(min_face)
        if not os.path.isfile(model_path):
            raise DetectorError(f"YuNet model file not found: {model_path}")
        import cv2
        try:
            self.net = cv2.FaceDetectorYN.create(model_path, "", (320, 320), score_threshold)
        except cv2.error as exc:
            raise DetectorError(f"could not load YuNet model {model_path}: {exc}") from None

    def _detect(self, rgb):
        import cv2
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        self.net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self.net.detect(bgr)
        if faces is None:
            return []
        return [(np.array([f[0], f[1], f[0] + f[2] - 1, f[1] + f[3] - 1], np.float32), float(f[-1]))
                for f in faces]


class MtcnnDetector(FaceDetector):
    """MTCNN (:mod:`common.mtcnn`, weights ``weights/mtcnn.pt``): three small
    CNNs; finds turned and tilted faces that the frontal Haar cascade misses."""
    calibration = MTCNN_CALIBRATION
    window = 12  # P-Net's window
    thread_safe = True  # no state between calls: FaceLandmarker.iter_landmarks detects in several threads

    def __init__(self, model_path: str | None = None, min_face: float | None = None):
        super().__init__(min_face)
        from .mtcnn import Mtcnn, MtcnnWeightsError, load_weights
        try:
            self.net = Mtcnn(load_weights(model_path or MTCNN_WEIGHTS))
        except MtcnnWeightsError as exc:
            raise DetectorError(str(exc)) from None

    def _detect(self, rgb):
        boxes, scores, _ = self.net.detect(rgb, self.window)
        return [(b, float(s)) for b, s in zip(boxes, scores)]


class BlazeFaceDetector(FaceDetector):
    """BlazeFace, short range (:mod:`common.blazeface`, weights
    ``weights/blazeface.pt``): one small network over the image at two or
    three sizes; the default, about twice as fast as MTCNN on a CPU at the
    same detection rate (weights/README.md, *Speed* and *Evaluation*)."""
    calibration = BLAZEFACE_CALIBRATION
    window = 20  # common.blazeface.SMALLEST (not imported here: it imports torch)
    thread_safe = True  # no state between calls

    def __init__(self, model_path: str | None = None, min_face: float | None = None,
                 threshold: float | None = None):
        super().__init__(min_face)
        from .blazeface import THRESHOLD, BlazeFace, BlazeFaceWeightsError, load_weights
        try:
            self.net = BlazeFace(load_weights(model_path or BLAZEFACE_WEIGHTS),
                                 threshold=THRESHOLD if threshold is None else threshold)
        except BlazeFaceWeightsError as exc:
            raise DetectorError(str(exc)) from None

    def _detect(self, rgb):
        boxes, scores, _ = self.net.detect(rgb)
        return [(b, float(s)) for b, s in zip(boxes, scores)]


def make_detector(name: str = DEFAULT_DETECTOR, model_path: str | None = None,
                  min_face: float | None = None) -> FaceDetector:
    """One of :data:`DETECTORS`: ``blazeface`` and ``mtcnn`` (``model_path``:
    their weights, default ``weights/blazeface.pt``, ``weights/mtcnn.pt``),
    ``haar``, or ``yunet`` (needs ``model_path``, an ONNX file), finding
    faces from ``min_face`` pixels up (None: :data:`MIN_FACE`)."""
    if name == "haar":
        return HaarDetector(min_face=min_face)
    if name == "blazeface":
        return BlazeFaceDetector(model_path, min_face=min_face)
    if name == "mtcnn":
        return MtcnnDetector(model_path, min_face=min_face)
    if name == "yunet":
        if not model_path:
            raise DetectorError("the yunet detector needs --detector-model PATH (an ONNX file)")
        return YuNetDetector(model_path, min_face=min_face)
    raise DetectorError(f"unknown detector {name!r} (want one of {', '.join(DETECTORS)})")


def add_detector_arguments(group) -> None:
    """``--detector``, ``--detector-model`` and ``--min-face``, the same in
    every script that detects faces."""
    group.add_argument("--detector", default=DEFAULT_DETECTOR, choices=DETECTORS,
                       help="face detector: blazeface (default; weights/blazeface.pt), mtcnn "
                            "(weights/mtcnn.pt; slower), OpenCV's frontal Haar cascade, or YuNet (needs "
                            "--detector-model); see weights/README.md")
    group.add_argument("--detector-model", default=None, metavar="FILE",
                       help="model file: YuNet's ONNX file (required), or other BlazeFace or MTCNN weights")
    group.add_argument("--min-face", type=float, default=None, metavar="PX",
                       help=f"smallest face to look for, in image pixels (default: {MIN_FACE}, "
                            "common/detector.py's MIN_FACE; 80, what dlib finds without upsampling, is "
                            "faster on large photos)")
