"""Head pose from the 68 landmarks: yaw, pitch and roll in degrees.

    pose = estimate_pose(points, image_size=(h, w))
    print(pose.yaw, pose.pitch, pose.roll)

The 68 points are fitted (``cv2.solvePnP``) to a 3-D mean face of the same
68 points, ``common/face_shape_68.csv``, estimated from our training
annotations by ``training/tools/estimate_face_shape.py``.

Frames. The face model's axes, for a frontal face, are the camera's (OpenCV):
x to the image right (the subject's left), y down, z away from the camera;
its origin is the nose tip (point 30) and its unit the distance between the
outer eye corners (points 36 and 45). ``Pose.rotation`` (Rodrigues) and
``Pose.translation`` map model points into camera coordinates
(``X_cam = R X + t``), so ``translation`` is where the nose tip is.

Sign convention (the one place it is stated), for the picture as seen:
- yaw > 0: the face turns towards the image right (the subject turns to
  their left), the nose moving right;
- pitch > 0: the face looks up, the nose moving up;
- roll > 0: the face is rotated counter-clockwise in the picture (the head
  tilts towards the subject's right shoulder, which is on the image left),
  like a positive angle of ``cv2.getRotationMatrix2D``.
A frontal, upright face has all three at 0. The angles compose as
``R = Rz(roll) Ry(yaw) Rx(-pitch)`` in a frame with y up and z towards the
viewer: pitch applied first, roll last, so rotating the image about the
principal point adds exactly to roll. Mirroring the image negates yaw and
roll and keeps pitch.

Camera: unless given, focal length = image width in pixels, principal point
at the image centre ``((w - 1) / 2, (h - 1) / 2)`` (0-based pixel centres),
no distortion.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import cv2
import numpy as np

FACE_SHAPE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "face_shape_68.csv")
NOSE_TIP = 30
# Camera frame (y down, z forward) <-> the frame with y up, z towards the viewer.
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


@dataclass
class Pose:
    """Head pose of one face (sign convention: module docstring).

    ``yaw``, ``pitch``, ``roll``: degrees; ``rotation``: float64 (3,)
    Rodrigues vector and ``translation``: float64 (3,), model -> camera
    coordinates (units of the face shape: outer-eye-corner distance = 1).
    """
    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray
    translation: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 rotation matrix of :attr:`rotation`."""
        return cv2.Rodrigues(np.asarray(self.rotation, np.float64).reshape(3, 1))[0]


def load_face_shape(path: str = FACE_SHAPE_PATH) -> np.ndarray:
    """The 3-D mean face: float64 ``(68, 3)`` in the model frame (module
    docstring), read from a CSV with ``#`` comment lines and rows
    ``index,x,y,z``."""
    return _load_face_shape(os.path.abspath(path)).copy()


@functools.lru_cache(maxsize=4)
def _load_face_shape(path: str) -> np.ndarray:
    rows = np.loadtxt(path, delimiter=",", comments="#", ndmin=2, encoding="utf-8")
    if rows.shape != (68, 4) or not np.array_equal(rows[:, 0], np.arange(68)):
        raise ValueError(f"{path}: expected 68 rows 'index,x,y,z' with indices 0-67")
    return rows[:, 1:]


def default_camera(image_size: tuple[int, int]) -> np.ndarray:
    """3x3 float64 intrinsics for an image of ``(height, width)``: focal =
    width, principal point at the centre ``((w - 1) / 2, (h - 1) / 2)``."""
    h, w = int(image_size[0]), int(image_size[1])
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be (height, width) >= 1, got {image_size}")
    return np.array([[w, 0.0, (w - 1) / 2.0], [0.0, w, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3x3 float64 rotation (model -> OpenCV camera frame) of a head at
    ``yaw``, ``pitch``, ``roll`` degrees (module docstring's convention)."""
    y, p, r = np.radians([yaw, pitch, roll])
    return _FLIP_YZ @ (_rz(r) @ _ry(y) @ _rx(-p)) @ _FLIP_YZ


def angles_from_rotation(matrix: np.ndarray) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` degrees of a 3x3 rotation (model -> camera);
    inverse of :func:`rotation_from_angles` for |yaw| < 90."""
    r = _FLIP_YZ @ np.asarray(matrix, np.float64) @ _FLIP_YZ
    yaw = np.arctan2(-r[2, 0], np.hypot(r[0, 0], r[1, 0]))
    roll = np.arctan2(r[1, 0], r[0, 0])
    pitch = -np.arctan2(r[2, 1], r[2, 2])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


def project_shape(rotation: np.ndarray, translation: np.ndarray, camera: np.ndarray,
                  shape: np.ndarray | None = None) -> np.ndarray:
    """Image points float32 ``(N, 2)`` of the 3-D ``shape`` (default: the
    mean face) under a 3x3 ``rotation`` (or Rodrigues (3,)) and
    ``translation`` (3,), pinhole ``camera`` without distortion."""
    shape = load_face_shape() if shape is None else np.asarray(shape, np.float64)
    rvec = np.asarray(rotation, np.float64)
    rvec = cv2.Rodrigues(rvec)[0] if rvec.shape == (3, 3) else rvec.reshape(3, 1)
    pts, _ = cv2.projectPoints(shape.reshape(-1, 1, 3), rvec, np.asarray(translation, np.float64).reshape(3, 1),
                               np.asarray(camera, np.float64), None)
    return pts.reshape(-1, 2).astype(np.float32)


def estimate_pose(points: np.ndarray, image_size: tuple[int, int], camera: np.ndarray | None = None,
                  shape: np.ndarray | None = None) -> Pose:
    """Head pose of a face from its ``(68, 2)`` landmarks (pixels of an image
    of ``image_size`` = ``(height, width)``, iBUG order).

    ``camera``: 3x3 intrinsics (None: :func:`default_camera`); ``shape``:
    ``(68, 3)`` model points (None: the mean face). Fits with EPnP, refined by
    ``cv2.SOLVEPNP_ITERATIVE`` (Levenberg-Marquardt on the reprojection
    error). Raises ValueError for points of another shape or a failed fit.
    """
    pts = np.asarray(points, np.float64)
    if pts.shape != (68, 2) or not np.isfinite(pts).all():
        raise ValueError(f"expected finite (68, 2) landmarks, got shape {pts.shape}")
    model = load_face_shape() if shape is None else np.asarray(shape, np.float64)
    k = default_camera(image_size) if camera is None else np.asarray(camera, np.float64)
    obj, img = model.reshape(-1, 1, 3), pts.reshape(-1, 1, 2)
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, flags=cv2.SOLVEPNP_EPNP)
    if ok and tvec[2, 0] > 0:
        ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, rvec, tvec, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
    else:   # EPnP put the face behind the camera: start from scratch
        ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.isfinite(rvec).all() or not np.isfinite(tvec).all():
        raise ValueError("solvePnP found no pose for these points")
    yaw, pitch, roll = angles_from_rotation(cv2.Rodrigues(rvec)[0])
    return Pose(yaw, pitch, roll, rvec.reshape(3).astype(np.float64), tvec.reshape(3).astype(np.float64))
