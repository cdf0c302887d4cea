"""Face alignment: warp a face to a canonical chip from its landmarks (the
68 iBUG points, or a model's points of another scheme).

    chip, matrix = align_face(image, points, size=112, template="arcface")
    chip_points = transform_points(matrix, points)
    chip, matrix = align_face(image, points5, template="arcface", scheme=model.scheme)

A similarity transform (rotation, uniform scale, translation) is fitted by
least squares from some of the 68 points to a template, then the image is
warped with it. ``matrix`` is a 2x3 float64 array mapping pixels of the input
image to pixels of the chip (0-based pixel centres, as everywhere in the
package); :func:`invert_matrix` maps back.

Templates:
- ``"arcface"``: the 5-point template of ArcFace / insightface (112 x 112),
  fitted to the centres of both eyes (means of points 36-41 and 42-47), the
  nose tip (30) and the mouth corners (48, 54); other sizes scale it. A
  scheme without the 68 iBUG points that names those five (eye centres, or
  each eye's two corners, nose tip, mouth corners: ``named_points`` in its
  scheme file, :data:`common.schemes.POINT_NAMES`) fits it from them
  (:meth:`common.schemes.Scheme.arcface_groups`).
- ``"dlib"``: the chip of dlib's ``get_face_chip(img, shape, size, padding)``:
  dlib's mean face, fitted to the 33 points it uses (27-54 and 60-64; dlib
  ignores the brows and the lower lip).
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import InputError
from .schemes import IBUG68, Scheme

# insightface's ArcFace template for 112 x 112 chips, in chip pixels: the
# subject's right eye (left in the chip), left eye, nose tip, right and left
# mouth corners.
ARCFACE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
], np.float64)

# dlib's mean face, normalised to [0, 1], for the points its
# get_face_chip_details() fits: iBUG point -> (x, y). Source: dlib,
# dlib/image_transforms/interpolation.h, get_face_chip_details()
# (github.com/davisking/dlib; Boost Software License), whose table lists
# points 17-67 as two arrays; only the 33 points dlib uses are kept here.
_DLIB_MEAN_FACE: dict[int, tuple[float, float]] = {
    27: (0.490127, 0.203352), 28: (0.490127, 0.307009), 29: (0.490127, 0.409805),
    30: (0.490127, 0.515625), 31: (0.36688, 0.587326), 32: (0.426036, 0.609345),
    33: (0.490127, 0.628106), 34: (0.554217, 0.609345), 35: (0.613373, 0.587326),
    36: (0.121737, 0.216423), 37: (0.187122, 0.178758), 38: (0.265825, 0.179852),
    39: (0.334606, 0.231733), 40: (0.260918, 0.245099), 41: (0.182743, 0.244077),
    42: (0.645647, 0.231733), 43: (0.714428, 0.179852), 44: (0.793132, 0.178758),
    45: (0.858516, 0.216423), 46: (0.79751, 0.244077), 47: (0.719335, 0.245099),
    48: (0.254149, 0.780233), 49: (0.340985, 0.745405), 50: (0.428858, 0.727388),
    51: (0.490127, 0.742578), 52: (0.551395, 0.727388), 53: (0.639268, 0.745405),
    54: (0.726104, 0.780233), 60: (0.290379, 0.784792), 61: (0.428096, 0.778746),
    62: (0.490127, 0.785343), 63: (0.552157, 0.778746), 64: (0.689874, 0.784792),
}
DLIB_INDICES: tuple[int, ...] = tuple(sorted(_DLIB_MEAN_FACE))
DLIB_MEAN_FACE = np.array([_DLIB_MEAN_FACE[i] for i in DLIB_INDICES], np.float64)

TEMPLATES = ("arcface", "dlib")
DEFAULT_PADDING = {"arcface": 0.0, "dlib": 0.2}   # dlib's own default padding


def arcface_points(points: np.ndarray, scheme: Scheme = IBUG68) -> np.ndarray:
    """The 5 ArcFace points of ``(K, 2)`` landmarks of ``scheme``, float64
    ``(5, 2)``: right-eye centre, left-eye centre, nose tip, right and left
    mouth corners (iBUG 68: means of 36-41 and 42-47, 30, 48, 54; others:
    :meth:`common.schemes.Scheme.arcface_groups`)."""
    p = np.asarray(points, np.float64)
    return np.stack([p[list(g)].mean(0) for g in template_groups("arcface", scheme)])


def template_groups(template: str, scheme: Scheme = IBUG68) -> tuple[tuple[int, ...], ...]:
    """Positions in ``scheme``'s points that give ``template``'s points (each
    the mean of its group); raises :class:`common.errors.InputError` (one
    line, naming ``--chips``) when the scheme cannot make that chip."""
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {TEMPLATES}, got {template!r}")
    if template == "dlib":
        if scheme.ibug68 is None:
            raise InputError(f"--chip-template dlib needs the 68 iBUG points; this model predicts {scheme.describe()}"
                             " (--chip-template arcface needs only eyes, nose tip and mouth corners)")
        return tuple((scheme.ibug68[i],) for i in DLIB_INDICES)
    groups = scheme.arcface_groups()
    if groups is None:
        raise InputError(f"--chips needs the eye centres (or corners), nose tip and mouth corners; "
                         f"{scheme.describe()} does not name them (its scheme file's \"named_points\", "
                         "common/schemes.py)")
    return groups


def template_points(template: str, size: int, padding: float | None = None,
                    points: np.ndarray | None = None, scheme: Scheme = IBUG68) -> tuple[np.ndarray, np.ndarray]:
    """``(source, target)`` float64 ``(K, 2)`` point pairs for ``template``:
    the points taken from the ``(N, 2)`` landmarks ``points`` of ``scheme``
    (iBUG 68 by default; None: an empty ``(0, 2)`` source) and where they go
    in a ``size`` x ``size`` chip.

    ``padding`` (None: :data:`DEFAULT_PADDING`) adds that fraction of the
    template's extent on each side, as dlib does: a normalised template point
    ``m`` goes to ``(padding + m) / (1 + 2 padding) * size``. The ArcFace
    template is normalised by 112, so padding 0 gives insightface's chip.
    """
    groups = template_groups(template, scheme)
    padding = DEFAULT_PADDING[template] if padding is None else float(padding)
    if padding < 0 or size < 1:
        raise ValueError(f"need padding >= 0 and size >= 1, got {padding}, {size}")
    unit = ARCFACE_112 / 112.0 if template == "arcface" else DLIB_MEAN_FACE
    p = np.asarray(points, np.float64) if points is not None else None
    src = np.stack([p[list(g)].mean(0) for g in groups]) if p is not None else np.zeros((0, 2))
    return src, (padding + unit) / (1.0 + 2.0 * padding) * size


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale,
    translation; no reflection) taking ``src`` to ``dst``, both ``(K, 2)``
    with K >= 2: minimises ``sum |A src_k - dst_k|^2``. Returns 2x3 float64.

    Closed form (Umeyama 1991 in 2-D): with points as complex numbers ``z``
    and ``w``, centred, the best ``c = s e^{i theta}`` is
    ``sum conj(z) w / sum |z|^2``.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two (K, 2) arrays with K >= 2, got {src.shape} and {dst.shape}")
    z = src[:, 0] + 1j * src[:, 1]
    w = dst[:, 0] + 1j * dst[:, 1]
    zc, wc = z - z.mean(), w - w.mean()
    energy = float(np.sum(np.abs(zc) ** 2))
    if energy <= 1e-12:
        raise ValueError("the source points coincide: no similarity transform")
    c = np.sum(np.conj(zc) * wc) / energy
    t = w.mean() - c * z.mean()
    return np.array([[c.real, -c.imag, t.real], [c.imag, c.real, t.imag]], np.float64)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine ``matrix`` to ``(N, 2)`` points: float32 ``(N, 2)``."""
    m = np.asarray(matrix, np.float64)
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return (p @ m[:, :2].T + m[:, 2]).astype(np.float32)


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine ``matrix`` (e.g. chip -> image), 2x3 float64."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64)).astype(np.float64)


def alignment_matrix(points: np.ndarray, size: int = 112, template: str = "arcface",
                     padding: float | None = None, scheme: Scheme = IBUG68) -> np.ndarray:
    """The 2x3 float64 matrix (image pixels -> chip pixels) that
    :func:`align_face` warps with, from ``(K, 2)`` landmarks of ``scheme``."""
    points = np.asarray(points, np.float64)
    if points.shape != (scheme.num_points, 2) or not np.isfinite(points).all():
        raise ValueError(f"expected finite ({scheme.num_points}, 2) landmarks, got shape {points.shape}")
    src, dst = template_points(template, size, padding, points, scheme)
    return fit_similarity(src, dst)


def align_face(image: np.ndarray, points: np.ndarray, size: int = 112, template: str = "arcface",
               padding: float | None = None, border: int = cv2.BORDER_CONSTANT,
               scheme: Scheme = IBUG68) -> tuple[np.ndarray, np.ndarray]:
    """Cut a ``size`` x ``size`` chip of the face with landmarks ``points``.

    ``image``: ``(H, W)`` or ``(H, W, C)`` array (any dtype cv2 warps; the
    chip keeps it); ``points``: ``(K, 2)`` pixels of ``image`` in
    ``scheme``'s order (default: the 68 iBUG points; a scheme that cannot
    make the chip raises :class:`common.errors.InputError`, see
    :func:`template_groups`); ``template``: "arcface" or "dlib" (module docstring); ``padding``: see
    :func:`template_points`. Returns ``(chip, matrix)``: the chip, ``(size,
    size)`` or ``(size, size, C)``, and the 2x3 float64 matrix taking image
    pixels to chip pixels. Outside the image is black (``border``).
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an image (H, W) or (H, W, C), got shape {image.shape}")
    matrix = alignment_matrix(points, size, template, padding, scheme)
    chip = cv2.warpAffine(image, matrix, (int(size), int(size)), flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=0)
    if image.ndim == 3 and chip.ndim == 2:   # cv2 drops a single channel
        chip = chip[:, :, None]
    return chip, matrix
