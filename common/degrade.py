"""Fixed photo degradations for measuring robustness (``evaluate.py
--degrade``): what a model's error becomes on dim, flat, blurred or heavily
compressed photos, and whether an int8 export keeps up with its float model
on pictures unlike its calibration crops.

Each takes a uint8 image (RGB ``(H, W, 3)`` or gray ``(H, W)``) and returns
one of the same shape and type; the landmarks do not move. :func:`tight`
also takes the faces' boxes.
"""
from __future__ import annotations

import cv2
import numpy as np


def low_contrast(image: np.ndarray) -> np.ndarray:
    """Half the contrast around mid-gray."""
    return np.clip((image.astype(np.float32) - 128.0) * 0.5 + 128.0, 0, 255).round().astype(np.uint8)


def dark(image: np.ndarray) -> np.ndarray:
    """About a stop and a half under-exposed: 0.35 x the intensity."""
    return np.clip(image.astype(np.float32) * 0.35, 0, 255).round().astype(np.uint8)


def blur(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Gaussian blur, by default of sigma 2 pixels (defocus or motion on a small face)."""
    return cv2.GaussianBlur(image, (0, 0), float(sigma))


def jpeg(image: np.ndarray, quality: int = 15) -> np.ndarray:
    """Re-encoded as JPEG, by default at quality 15 (blocking, as in messaging apps' thumbnails)."""
    flip = image.ndim == 3  # OpenCV encodes BGR
    ok, buf = cv2.imencode(".jpg", image[..., ::-1] if flip else image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR if flip else cv2.IMREAD_GRAYSCALE)
    return np.ascontiguousarray(out[..., ::-1]) if flip else out


def tight(image: np.ndarray, boxes, margin: float = 0.1) -> np.ndarray:
    """A photo cut tight around its faces, as a face chip from another tool:
    black (what a crop beyond the photo's edge gets) outside each
    ``(x0, y0, x1, y1)`` box grown by ``margin`` x its larger side on every side."""
    keep = np.zeros(image.shape[:2], bool)
    h, w = keep.shape
    for x0, y0, x1, y1 in boxes:
        m = margin * max(x1 - x0, y1 - y0)
        c0, r0 = max(int(np.floor(x0 - m)), 0), max(int(np.floor(y0 - m)), 0)
        c1, r1 = min(int(np.ceil(x1 + m)) + 1, w), min(int(np.ceil(y1 + m)) + 1, h)
        keep[r0:r1, c0:c1] = True
    out = image.copy()
    out[~keep] = 0
    return out


DEGRADATIONS = {"low-contrast": low_contrast, "dark": dark, "blur": blur, "jpeg": jpeg}
