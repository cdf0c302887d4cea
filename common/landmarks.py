"""The 68-point iBUG / 300-W landmark scheme: regions, eye points, mirroring
(other schemes, and what any scheme is: :mod:`common.schemes`)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

NUM_FACE_POINTS = 68

# Same names and ranges as imutils.face_utils.FACIAL_LANDMARKS_68_IDXS
# ("right" is the subject's right, which appears on the left of the photo).
REGIONS_68: "OrderedDict[str, tuple[int, int]]" = OrderedDict([
    ("mouth", (48, 68)),
    ("inner_mouth", (60, 68)),
    ("right_eyebrow", (17, 22)),
    ("left_eyebrow", (22, 27)),
    ("right_eye", (36, 42)),
    ("left_eye", (42, 48)),
    ("nose", (27, 36)),
    ("jaw", (0, 17)),
])

FACE_INDICES: tuple[int, ...] = tuple(range(68))
EYE_INDICES: tuple[int, ...] = tuple(range(36, 48))
# Outer eye corners: NME normalisation for both the face and the eye model.
OUTER_EYE_CORNERS: tuple[int, int] = (36, 45)

# Mirror partner of every point in the 68-point scheme (0-based).
_PAIRS_68 = (
    [(i, 16 - i) for i in range(8)]                       # jaw
    + [(17 + i, 26 - i) for i in range(5)]                # brows
    + [(31, 35), (32, 34)]                                # nostrils
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]  # outer lip
    + [(60, 64), (61, 63), (67, 65)]                      # inner lip
)


def _build_flip_permutation() -> tuple[int, ...]:
    perm = list(range(NUM_FACE_POINTS))
    for a, b in _PAIRS_68:
        perm[a], perm[b] = b, a
    return tuple(perm)


FLIP_PERMUTATION_68: tuple[int, ...] = _build_flip_permutation()


def flip_permutation(indices: tuple[int, ...] | list[int]) -> list[int]:
    """Mirror permutation for a subset of the 68 points, as positions in ``indices``.

    The subset must be closed under mirroring (the face and the eyes are).
    """
    pos = {idx: k for k, idx in enumerate(indices)}
    try:
        return [pos[FLIP_PERMUTATION_68[idx]] for idx in indices]
    except KeyError as exc:
        raise ValueError(f"landmark subset is not closed under mirroring: {exc}") from None


def normalisation_pair(indices: tuple[int, ...] | list[int]) -> tuple[int, int]:
    """Positions of the outer eye corners (36, 45) inside ``indices``."""
    indices = list(indices)
    return indices.index(OUTER_EYE_CORNERS[0]), indices.index(OUTER_EYE_CORNERS[1])


def region_of_point(index: int) -> str:
    """Name of the region of one of the 68 points (inner mouth wins over mouth)."""
    for name in ("inner_mouth", "mouth", "right_eyebrow", "left_eyebrow", "right_eye",
                 "left_eye", "nose", "jaw"):
        lo, hi = REGIONS_68[name]
        if lo <= index < hi:
            return name
    raise ValueError(f"point index {index} is outside 0-67")


def landmark_box(points: np.ndarray) -> np.ndarray:
    """Tight box ``(x0, y0, x1, y1)`` float32 around ``(N, 2)`` points."""
    pts = np.asarray(points, dtype=np.float32)
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()],
                    dtype=np.float32)


def eye_aspect_ratio(eye: np.ndarray) -> float:
    """EAR of one eye's six points in iBUG order (Soukupova and Cech, 2016)."""
    eye = np.asarray(eye, dtype=np.float64)
    a = np.linalg.norm(eye[1] - eye[5])
    b = np.linalg.norm(eye[2] - eye[4])
    c = np.linalg.norm(eye[0] - eye[3])
    return float((a + b) / (2.0 * c)) if c > 0 else 0.0
