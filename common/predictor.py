"""Face landmarks for whole images: detect every face, then put the face
model's K points on each (the 68 iBUG points for the shipped models; any
scheme a model was trained on, :mod:`common.schemes`) and, with an eye model,
the 12 eye points 36-47.

    from common.predictor import FaceLandmarker
    fl = FaceLandmarker("weights/face.pt", eye_weights="weights/eyes.pt", device="auto")
    for face in fl.detect_landmarks("pic.jpg"):
        print(face.box, face.points.shape, face.ears)

Arrays follow the package convention: float32 ``(N, 2)`` ``(x, y)`` in pixels
of the input image, 0-based pixel centres; boxes ``(x0, y0, x1, y1)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .detector import DEFAULT_DETECTOR, Detection, FaceDetector, make_detector
from .device import select_device
from .images import read_image, rgb_to_gray, to_uint8
from .landmark_model import LandmarkModel, refined_boxes, refined_crops  # noqa: F401
from .landmarks import eye_aspect_ratio
from .model_options import TorchLevers, choice_line, default_weights
from .pose import Pose, estimate_pose
from .schemes import detector_calibration, require_ibug68

RIGHT_EYE = tuple(range(36, 42))   # subject's right eye: left side of the photo
LEFT_EYE = tuple(range(42, 48))


@dataclass
class FaceResult:
    """Landmarks of one face, all in pixels of the input image.

    - ``box``: detector box ``(x0, y0, x1, y1)`` float32 (4,)
    - ``face_box``: the same face in the landmark-box convention (the box the
      crop was taken from), float32 (4,)
    - ``score``: detector score, or None when the detector gives none
    - ``points``: float32 (K, 2) in the face model's scheme (iBUG 68-point
      order for the shipped models)
    - ``eye_points``: float32 (12, 2), iBUG points 36-47, from the eye model
      (None without one)
    - ``ears``: eye aspect ratios ``{"right": float, "left": float}`` of the
      subject's right (points 36-41) and left (42-47) eye (None without an
      eye model)
    - ``inside``: bool (K,), False for points outside the image (a face cut
      by the border gets its hidden points guessed outside; None if unknown)
    - ``point_scores``: float32 (68,) in [0, 1], the face model's confidence
      in each point (None for models without scores); :attr:`quality` is
      their mean
    - ``pose``: head pose from ``points`` (:class:`common.pose.Pose`; None
      unless asked for)
    - ``chip``: an aligned face chip, ``{"path": str, "matrix": 2x3 image ->
      chip pixels}`` (``common.alignment``; None unless one was saved)
    """
    box: np.ndarray
    face_box: np.ndarray
    score: float | None
    points: np.ndarray
    eye_points: np.ndarray | None = None
    ears: dict[str, float] | None = None
    inside: np.ndarray | None = None
    point_scores: np.ndarray | None = None

    @property
    def quality(self) -> float | None:
        """The face's confidence: mean of ``point_scores`` (None without them)."""
        return None if self.point_scores is None else float(np.mean(self.point_scores))
    pose: Pose | None = None
    chip: dict | None = None


def face_to_dict(face: FaceResult, face_id: int | None = None, blinks: int | None = None,
                 digits: int = 2) -> dict:
    """The JSON form of one face (the one place that defines it):
    ``{"id"?, "box": [x0,y0,x1,y1], "face_box": [...], "score": float|null,
    "points": [[x, y] * K], "eye_points"?: [[x, y] * 12],
    "inside"?: [bool * K], "ears"?: {"right": float, "left": float},
    "blinks"?: int, "pose"?: {"yaw", "pitch", "roll": degrees, "rotation":
    [3], "translation": [3]}, "chip"?: {"path": str, "matrix": [[a, b, c],
    [d, e, f]]}}``, pixels of the input image; ``inside`` is false for a
    point outside the image; ``id`` (track) and ``blinks`` (so far) in
    videos only."""
    def r(a):
        return np.round(np.asarray(a, np.float64), digits).tolist()
    out: dict = {}
    if face_id is not None:
        out["id"] = int(face_id)
    out["box"] = r(face.box)
    out["face_box"] = r(face.face_box)
    out["score"] = None if face.score is None else round(float(face.score), 4)
    out["points"] = r(face.points)
    if face.inside is not None:
        out["inside"] = [bool(v) for v in face.inside]
    if face.point_scores is not None:
        out["point_scores"] = np.round(np.asarray(face.point_scores, np.float64), 3).tolist()
        out["quality"] = round(float(face.quality), 3)
    if face.eye_points is not None:
        out["eye_points"] = r(face.eye_points)
    if face.ears is not None:
        out["ears"] = {k: round(float(v), 4) for k, v in face.ears.items()}
    if blinks is not None:
        out["blinks"] = int(blinks)
    if face.pose is not None:
        p = face.pose
        out["pose"] = {"yaw": round(float(p.yaw), digits), "pitch": round(float(p.pitch), digits),
                       "roll": round(float(p.roll), digits),
                       "rotation": np.round(np.asarray(p.rotation, np.float64), 4).tolist(),
                       "translation": np.round(np.asarray(p.translation, np.float64), 4).tolist()}
    if face.chip is not None:
        out["chip"] = {"path": str(face.chip["path"]),
                       "matrix": np.round(np.asarray(face.chip["matrix"], np.float64), 6).tolist()}
    return out


def prepare_image(image, colour: str = "rgb") -> tuple[np.ndarray, np.ndarray]:
    """``(rgb, gray)`` uint8 views of an input image.

    ``image``: a path (read as RGB, EXIF orientation applied), a PIL image,
    or an array: ``(H, W)`` grayscale, or ``(H, W, 3|4)`` in ``colour`` order
    ("rgb", the default, or "bgr" for OpenCV frames; a 4th channel is alpha
    and ignored). uint16 and float arrays are rescaled to uint8. Raises
    :class:`common.errors.ImageReadError` for unreadable files and
    ValueError for arrays of another shape.
    """
    if colour not in ("rgb", "bgr"):
        raise ValueError(f"colour must be 'rgb' or 'bgr', got {colour!r}")
    if isinstance(image, (str, os.PathLike)):
        rgb = read_image(os.fspath(image))
        return rgb, rgb_to_gray(rgb)
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL image
        image, colour = np.asarray(image.convert("RGB")), "rgb"
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        gray = np.ascontiguousarray(to_uint8(a))
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), gray
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 1:
        raise ValueError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    a = np.ascontiguousarray(to_uint8(a[:, :, :3]))
    rgb = a if colour == "rgb" else cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    return rgb, rgb_to_gray(rgb)


def gray_image(image, colour: str = "rgb") -> np.ndarray:
    """The ``(H, W)`` uint8 grayscale that :func:`prepare_image` gives, without
    its RGB copy when ``image`` is a plain 3-channel uint8 array (a video
    frame that only needs the landmark pass)."""
    a = np.asarray(image) if isinstance(image, np.ndarray) else None
    if a is not None and a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8 and colour in ("rgb", "bgr"):
        return cv2.cvtColor(a, cv2.COLOR_BGR2GRAY if colour == "bgr" else cv2.COLOR_RGB2GRAY)
    return prepare_image(image, colour)[1]


class FaceLandmarker:
    """Detect faces and predict their landmarks.

    ``weights``: face checkpoint (task "face"; 68 points, or any scheme,
    ``.scheme`` says which), or its ``.onnx``
    export (run with ONNX Runtime; so can ``eye_weights``); None: the shipped
    model for the device (:func:`common.model_options.default_weights`). ``eye_weights``: optional
    eye checkpoint (task "eyes", points 36-47), "default" for the shipped one;
    when given, every face also gets ``eye_points`` and ``ears``. ``device``: "auto", "cpu", "cuda" or a
    ``torch.device`` (a missing GPU raises :class:`common.errors.DeviceError`).
    ``detector``: "blazeface" (default; ``weights/blazeface.pt``), "mtcnn"
    (``weights/mtcnn.pt``; both take other weights in ``detector_model``),
    "haar" (OpenCV's frontal cascade), "yunet" (with
    ``detector_model``, an ONNX file) or a
    :class:`common.detector.FaceDetector`; ``min_face``: the
    smallest face it looks for, pixels (None: the detector's default,
    ``common.detector.MIN_FACE``; smaller is slower). ``refine``: run the face
    model a second time on the crop given by its first prediction's landmark
    box (the box convention it was trained on); the eye crop then uses that
    box too (default on: it lowers the error with detector boxes, see
    weights/README.md). ``flip_test``: also run every crop mirrored and
    average (lower error; with ``refine`` only the final pass is mirrored:
    1.5x the network time). ``multi_crop``: average the final pass over seven
    crops of each box (``common.landmark_model.MULTI_CROP``; 7x that pass's
    time, with ``flip_test`` 14x). ``pose``: also estimate every face's head pose
    (``FaceResult.pose``, :func:`common.pose.estimate_pose`). Bad checkpoints raise :class:`common.errors.CheckpointError`.
    The eye model and pose need a face model whose scheme gives the 68 iBUG
    points (else :class:`common.errors.InputError`). A face model of another
    scheme gets detector boxes converted by the calibration its checkpoint
    records for the detector, or an uncalibrated one derived from ibug68's
    (:func:`common.schemes.detector_calibration`; ``calibration_source`` says which).
    ``levers``: :class:`common.model_options.TorchLevers` (bfloat16,
    channels-last, torch.compile) for both models, ``.pt`` weights only (the
    default models are then the ``.pt`` ones).
    """

    def __init__(self, weights: str | None = None, eye_weights: str | None = None,
                 device: str | torch.device = "auto", detector: str | FaceDetector = DEFAULT_DETECTOR,
                 detector_model: str | None = None, refine: bool = True, flip_test: bool = False,
                 min_face: float | None = None, pose: bool = False, multi_crop: bool = False,
                 levers: TorchLevers = TorchLevers()):
        self.device = device if isinstance(device, torch.device) else select_device(device)
        # Why a default model was picked (None: the caller chose it).
        self.weights_reason = self.eye_weights_reason = None
        if not weights:
            weights, self.weights_reason = default_weights("face", self.device, bool(levers.names))
        self.weights = weights
        self.levers = levers
        self.face_model = LandmarkModel(weights, "face", self.device, levers=levers)
        self.face_model.flip_test, self.face_model.multi_crop = flip_test, multi_crop
        self.scheme = self.face_model.scheme
        self.detector = detector if isinstance(detector, FaceDetector) else make_detector(
            detector, detector_model, min_face)
        name = type(self.detector).__name__.lower().replace("detector", "")
        calibration, self.calibration_source = detector_calibration(
            self.scheme, name, type(self.detector).calibration)   # the class's: measured for ibug68
        if self.scheme.ibug_points is None:
            self.detector.calibration = calibration
        self.refine = refine
        if pose:
            require_ibug68(self.scheme, "pose")
        self.pose = pose
        self.eye_model = None
        self.eye_weights = None
        if eye_weights:
            self.add_eye_model(eye_weights)

    def add_eye_model(self, eye_weights: str) -> None:
        """Load the eye model (a path, or "default" for the shipped one); it
        needs a face model that gives the 68 iBUG points."""
        require_ibug68(self.scheme, "the eye model")
        if eye_weights == "default":
            eye_weights, self.eye_weights_reason = default_weights("eyes", self.device, bool(self.levers.names))
        self.eye_weights = eye_weights
        self.eye_model = LandmarkModel(eye_weights, "eyes", self.device, levers=self.levers)
        self.eye_model.flip_test = self.face_model.flip_test
        self.eye_model.multi_crop = self.face_model.multi_crop
        self._eye_pos = self.eye_model.positions(RIGHT_EYE + LEFT_EYE)

    def ibug68(self, points: np.ndarray) -> np.ndarray:
        """The 68 iBUG points ``(68, 2)`` of a face's ``(K, 2)`` points
        (raises :class:`common.errors.InputError` for a scheme without them)."""
        require_ibug68(self.scheme, "this")
        return np.asarray(points)[list(self.scheme.ibug68)]

    def choice_lines(self) -> list[str]:
        """One log line per model picked by default, saying which and why."""
        return [choice_line(path, why, option) for path, why, option in (
            (self.weights, self.weights_reason, "--weights"),
            (self.eye_weights, self.eye_weights_reason, "--eye-weights")) if why]

    def detect_faces(self, image, colour: str = "rgb") -> list[Detection]:
        """Face detections only (see :func:`prepare_image` for ``image``)."""
        rgb, _ = prepare_image(image, colour)
        return self.detector.detect(rgb)

    def detect_landmarks(self, image, colour: str = "rgb") -> list[FaceResult]:
        """Every face of ``image`` with its landmarks, sorted left to right.

        ``image``: a path, a PIL image, or an array (``(H, W)`` gray, or
        ``(H, W, 3)`` RGB; pass ``colour="bgr"`` for OpenCV frames). Returns
        an empty list when no face is found. Raises ImageReadError for an
        unreadable file.
        """
        rgb, gray = prepare_image(image, colour)
        detections = self.detector.detect(rgb)
        del rgb
        return self.landmarks_for_detections(gray, detections)

    def landmarks_for_detections(self, gray: np.ndarray, detections: list[Detection],
                                 refine: bool | None = None, pose: bool | None = None) -> list[FaceResult]:
        """Landmarks for given detections (e.g. from another detector) on a
        ``(H, W)`` uint8 grayscale image; all faces go through each model in
        one batch. ``refine``, ``pose``: None follows the landmarker's
        setting (a video's tracked faces pass ``refine=False``: their boxes
        already come from points; a stream passes ``pose=False``: it
        estimates the pose from the smoothed points)."""
        return self.landmarks_for_images([(gray, detections)], refine, pose)[0]

    def landmarks_for_images(self, items: list[tuple[np.ndarray, list[Detection]]],
                             refine: bool | None = None, pose: bool | None = None) -> list[list[FaceResult]]:
        """:meth:`landmarks_for_detections` for several images at once: the
        faces of all ``(gray, detections)`` items share each model's batch
        (the same points as one image at a time, within float tolerance)."""
        crops = [(gray, d.face_box) for gray, dets in items for d in dets]
        if not crops:
            return [[] for _ in items]
        if self.refine if refine is None else refine:
            crops = [(gray, box) for (gray, _), box in zip(crops, refined_crops(self.face_model, crops))]
        points, scores = self.face_model.predict_crops(crops)
        eyes = self.eye_model.predict_crops(crops)[0][:, self._eye_pos] if self.eye_model is not None else None
        out, i = [], 0
        for gray, dets in items:
            results = []
            for d in dets:
                r = FaceResult(np.asarray(d.box, np.float32), np.asarray(d.face_box, np.float32),
                               d.score, points[i].astype(np.float32))
                r.inside = points_inside(r.points, gray.shape[:2])
                if scores is not None:
                    r.point_scores = scores[i].astype(np.float32)
                if eyes is not None:
                    r.eye_points = eyes[i].astype(np.float32)
                    r.ears = eye_ratios(r.eye_points)
                if self.pose if pose is None else pose:
                    r.pose = estimate_pose(self.ibug68(r.points), gray.shape[:2])
                results.append(r)
                i += 1
            out.append(results)
        return out

    def iter_landmarks(self, sources, workers: int = 2, batch_faces: int = 16, colour: str = "rgb",
                       keep_rgb: bool = False):
        """Landmarks for many images at throughput: a pool of ``workers``
        threads reads and detects ahead (decoding and ONNX Runtime release
        the GIL), and the faces of consecutive images share the landmark
        models' batches (up to about ``batch_faces`` faces). Yields
        ``(index, source, rgb, faces)`` in input order; ``rgb`` is the
        decoded image when ``keep_rgb`` (else None) and ``faces`` a list of
        :class:`FaceResult`, or the exception that reading or detecting that
        image raised (the caller decides; the rest go on). ``workers`` 0:
        everything in the calling thread, one image at a time ahead."""
        import threading
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        # Detectors other than MTCNN keep state between calls (OpenCV's
        # cascade and YuNet): one thread at a time.
        lock = None if getattr(self.detector, "thread_safe", False) else threading.Lock()

        def load(src):
            rgb, gray = prepare_image(src, colour)
            if lock is None:
                dets = self.detector.detect(rgb)
            else:
                with lock:
                    dets = self.detector.detect(rgb)
            return (rgb if keep_rgb else None), gray, dets

        sources = iter(enumerate(sources))
        pool = ThreadPoolExecutor(workers) if workers > 0 else None
        ahead: deque = deque()
        depth = max(2 * workers, 1) + batch_faces // 4  # images decoded ahead: bounded memory

        def submit():
            for i, src in sources:
                ahead.append((i, src, pool.submit(load, src) if pool else src))
                if len(ahead) >= depth:
                    return

        def result(job):
            if pool is not None:
                return job.result()
            return load(job)

        try:
            submit()
            pending: list = []
            while ahead or pending:
                n_faces = sum(len(p[4]) for p in pending)
                failure = None
                if ahead and n_faces < batch_faces:
                    i, src, job = ahead.popleft()
                    submit()
                    try:
                        rgb, gray, dets = result(job)
                        pending.append((i, src, rgb, gray, dets))
                        continue
                    except Exception as exc:  # noqa: BLE001 - one image's failure, handed to the caller
                        failure = (i, src, None, exc)
                # A full batch, the end, or a failure (yielded in order, after the images before it).
                if pending:
                    faces = self.landmarks_for_images([(p[3], p[4]) for p in pending])
                    for (i2, src2, rgb2, _, _), f in zip(pending, faces):
                        yield i2, src2, rgb2, f
                    pending = []
                if failure is not None:
                    yield failure
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


def points_inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool ``(N,)``: which ``(N, 2)`` points lie on an image of ``size``
    ``(height, width)`` (pixel centres 0..width-1, 0..height-1, half a pixel
    of slack at the borders)."""
    h, w = size
    x, y = points[:, 0], points[:, 1]
    return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


def eye_ratios(eye_points: np.ndarray) -> dict[str, float]:
    """EARs of the (12, 2) eye points 36-47: ``{"right": ..., "left": ...}``
    (subject's right eye = points 36-41 = positions 0-5)."""
    return {"right": eye_aspect_ratio(eye_points[0:6]), "left": eye_aspect_ratio(eye_points[6:12])}
