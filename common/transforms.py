"""Image and landmark transforms: one function per step, ``(image, landmarks) -> (image, landmarks)``.

Images are grayscale ``(H, W)`` uint8 (float32 after the photometric steps);
landmarks follow the package convention (float32 ``(N, 2)`` pixel ``(x, y)``,
0-based, integer coordinates at pixel centres).

The crop that evaluation and inference use is :func:`face_region` followed by
:func:`crop` and :func:`resize`; training adds jitter to the same region.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from . import degrade
from .landmarks import FLIP_PERMUTATION_68, landmark_box

# Side of the square face crop, relative to the larger side of the tight
# landmark box (brows to chin, jaw to jaw).
FACE_CONTEXT = 1.25
# Eye-region crop, relative to the same landmark box: centre offset (fraction
# of the box side) and side. Measured by training/tools/eye_crop_stats.py on the
# training faces of the two sets (4,432 faces, held-out photos left out): the
# 12 eye points lie within x in [-0.41, 0.41] and y in [-0.38, -0.15] of the
# box side around the box centre (1st-99th percentiles; the x extremes are
# turned heads), so a square of side 1.0 centred 0.25 above the box centre
# holds them with 0.09 of the side to spare for box jitter, at 1.25x the
# resolution of the face crop.
EYE_CENTRE_DY = -0.25
EYE_CONTEXT = 1.00


@dataclass(frozen=True)
class Region:
    """A square crop region: centre ``(cx, cy)`` and side, in image pixels."""
    cx: float
    cy: float
    side: float


def face_region(box: np.ndarray, context: float = FACE_CONTEXT) -> Region:
    """Square face crop around a landmark-convention box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = [float(v) for v in box]
    side = max(x1 - x0, y1 - y0) * context
    return Region((x0 + x1) / 2.0, (y0 + y1) / 2.0, max(side, 2.0))


def eye_region(box: np.ndarray) -> Region:
    """Square eye-region crop derived from a landmark-convention face box."""
    x0, y0, x1, y1 = [float(v) for v in box]
    s = max(x1 - x0, y1 - y0)
    return Region((x0 + x1) / 2.0, (y0 + y1) / 2.0 + EYE_CENTRE_DY * s, max(s * EYE_CONTEXT, 2.0))


@dataclass(frozen=True)
class CropRule:
    """A scheme's crop convention: a square of ``context`` times the longer
    side of the points' box, centred on the box centre moved down by
    ``centre_dy`` times that side (``common.schemes``)."""
    context: float
    centre_dy: float = 0.0


def crop_region(rule: CropRule, box: np.ndarray) -> Region:
    """The square crop of ``rule`` around a landmark-convention box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = [float(v) for v in box]
    s = max(x1 - x0, y1 - y0)
    return Region((x0 + x1) / 2.0, (y0 + y1) / 2.0 + rule.centre_dy * s, max(s * rule.context, 2.0))


def task_region(task: "str | CropRule", box: np.ndarray) -> Region:
    """The crop region a model of ``task`` ("face" or "eyes", or a scheme's
    :class:`CropRule`) sees for a face box."""
    if isinstance(task, CropRule):
        return crop_region(task, box)
    if task == "face":
        return face_region(box)
    if task == "eyes":
        return eye_region(box)
    raise ValueError(f"unknown task {task!r} (want 'face' or 'eyes')")


def jitter_region(region: Region, rng: np.random.Generator, scale: float = 0.1,
                  shift: float = 0.05) -> Region:
    """Random scale (``1 +- scale``) and shift (``+- shift`` of the side) of a region,
    so that a model tolerates the spread of real detector boxes."""
    s = region.side * rng.uniform(1.0 - scale, 1.0 + scale)
    dx, dy = rng.uniform(-shift, shift, size=2) * region.side
    return Region(region.cx + dx, region.cy + dy, s)


def crop(image: np.ndarray, landmarks: np.ndarray, region: Region,
         border_value: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cut the square ``region`` out of ``image`` (padding outside it with
    ``border_value``). Output side is ``round(region.side)`` pixels."""
    side = max(int(round(region.side)), 1)
    # Map region centre to output centre; sub-pixel exact for the landmarks.
    ox = region.cx - (side - 1) / 2.0
    oy = region.cy - (side - 1) / 2.0
    m = np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy]], dtype=np.float64)
    out = cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
    pts = landmarks.astype(np.float32) - np.array([ox, oy], dtype=np.float32)
    return out, pts


def resize(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize a square image to ``size x size``; pixel centres map exactly."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image, landmarks
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    out = cv2.resize(image, (size, size), interpolation=interp)
    scale = np.array([size / w, size / h], dtype=np.float32)
    return out, (landmarks + 0.5) * scale - 0.5


def rotate(image: np.ndarray, landmarks: np.ndarray, angle: float,
           centre: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by ``angle`` degrees (counter-clockwise on screen) about ``centre``
    (default: centre of the landmarks' box); the image keeps its size."""
    h, w = image.shape[:2]
    if centre is None:
        b = landmark_box(landmarks)
        centre = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), 1.0)
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    pts = landmarks.astype(np.float64) @ m[:, :2].T + m[:, 2]
    return out, pts.astype(np.float32)


def mirror(image: np.ndarray, landmarks: np.ndarray,
           permutation: tuple[int, ...] = FLIP_PERMUTATION_68,
           offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right; points are reflected and re-indexed with ``permutation``
    so that, say, the subject's right eye corner stays point 36.

    ``offset``: how far (in this image's pixels) the annotation places points
    to the right of where a mirror-consistent annotation would; the mirrored
    points keep that offset instead of flipping it to the left (a pixel
    convention of the data set; ``training/tools/mirror_offset.py`` measures it)."""
    w = image.shape[1]
    out = np.ascontiguousarray(image[:, ::-1])
    pts = landmarks.astype(np.float32).copy()
    pts[:, 0] = (w - 1 + 2.0 * offset) - pts[:, 0]
    return out, pts[list(permutation)]


def colour_jitter(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                  contrast: float = 0.3, gamma: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Random contrast around the mean and gamma; returns float32 in [0, 255].
    (The network sees grayscale, so colour jitter reduces to tone changes.)"""
    img = image.astype(np.float32)
    g = float(np.exp(rng.uniform(-gamma, gamma)))  # a numpy float64 would promote img to float64
    img = 255.0 * np.power(img / 255.0, g)
    c = rng.uniform(1.0 - contrast, 1.0 + contrast)
    mean = float(img.mean())
    return np.clip((img - mean) * c + mean, 0, 255), landmarks


def brightness(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
               delta: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Add a random offset of up to ``delta`` x 255."""
    img = image.astype(np.float32) + rng.uniform(-delta, delta) * 255.0
    return np.clip(img, 0, 255), landmarks


def gaussian_noise(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                   sigma: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Add zero-mean Gaussian noise with a random std in ``[0, sigma]`` (0-255 scale)."""
    s = rng.uniform(0.0, sigma)
    img = image.astype(np.float32) + rng.standard_normal(image.shape).astype(np.float32) * s
    return np.clip(img, 0, 255), landmarks


def blur(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
         sigma: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blur with a random sigma in ``[0.3, sigma]`` pixels (defocus, motion, upscaled video)."""
    return degrade.blur(image, rng.uniform(0.3, sigma)), landmarks


def jpeg(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
         worst: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Re-encode a uint8 image as JPEG at a random quality in ``[worst, 90]``."""
    return degrade.jpeg(image, int(rng.integers(worst, 91))), landmarks


def occlude(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
            area: tuple[float, float] = (0.04, 0.2)) -> tuple[np.ndarray, np.ndarray]:
    """Cover a random rectangle (``area`` of the image, aspect 1:3 to 3:1)
    with a flat random gray: hands, microphones, hair. The points stay
    where they are: the model learns to place hidden ones from the rest."""
    h, w = image.shape[:2]
    a = rng.uniform(*area) * h * w
    aspect = float(np.exp(rng.uniform(np.log(1 / 3), np.log(3))))
    rh, rw = min(int(round(np.sqrt(a * aspect))), h), min(int(round(np.sqrt(a / aspect))), w)
    y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
    out = image.copy()
    out[y:y + rh, x:x + rw] = rng.integers(0, 256)
    return out, landmarks


def frame_tight(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                margin: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Black beyond the landmark box grown by a random ``[0, margin]`` x its
    side: the crop of a photo that was already cut tight around the face."""
    return degrade.tight(image, [landmark_box(landmarks)], rng.uniform(0.0, margin)), landmarks


def to_tensor(image: np.ndarray, landmarks: np.ndarray, mean: float = 0.5,
              std: float = 0.25) -> tuple[torch.Tensor, np.ndarray]:
    """``(H, W)`` 0-255 image to a normalised float32 ``(1, H, W)`` tensor."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).unsqueeze(0)
    return (t / 255.0 - mean) / std, landmarks


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (recorded in checkpoints)."""
    mirror: bool = True
    rotation: float = 20.0      # max degrees
    box_scale: float = 0.10     # +- relative crop size
    box_shift: float = 0.05     # +- fraction of crop side
    colour: bool = True
    brightness: float = 0.2
    noise: float = 6.0
    blur: float = 0.0           # probability of each (0: off, and no random draw)
    jpeg: float = 0.0
    occlusion: float = 0.0
    tight: float = 0.0


def train_pipeline(task: "str | CropRule", input_size: int, indices: tuple[int, ...],
                   aug: AugmentConfig, mean: float, std: float,
                   permutation: tuple[int, ...] = FLIP_PERMUTATION_68,
                   teacher_view: tuple[int, float, float] | None = None):
    """Training transform: mirror, rotation, jittered task crop, resize,
    (with their probabilities) blur, JPEG, occlusion and tight framing, tone jitter,
    brightness, noise, tensor. Takes the data's ``(N, 2)``
    landmarks (``permutation``: their flip permutation; and the
    annotation's ``mirror_offset`` in the image's pixels, see :func:`mirror`) and
    returns ``(tensor (1,S,S), float32 (K,2) points in input pixels)``.

    ``teacher_view`` ``(size, mean, std)``: also return, third, the same
    crop (same mirror, rotation and jitter) for a teacher network at its
    own input size and normalisation, without the damage, tone, brightness
    and noise steps: the teacher labels the clean view of what the student sees."""
    idx = list(indices)

    def apply(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
              mirror_offset: float = 0.0):
        if aug.mirror and rng.random() < 0.5:
            image, landmarks = mirror(image, landmarks, permutation, offset=mirror_offset)
        if aug.rotation > 0:
            image, landmarks = rotate(image, landmarks, rng.uniform(-aug.rotation, aug.rotation))
        region = jitter_region(task_region(task, landmark_box(landmarks)), rng,
                               aug.box_scale, aug.box_shift)
        image, landmarks = crop(image, landmarks, region)
        teacher = None
        if teacher_view is not None:
            size, t_mean, t_std = teacher_view
            teacher, _ = to_tensor(resize(image, landmarks, size)[0], landmarks, t_mean, t_std)
        image, landmarks = resize(image, landmarks, input_size)
        for p, step in ((aug.blur, blur), (aug.jpeg, jpeg), (aug.occlusion, occlude),
                        (aug.tight, frame_tight)):
            if p > 0 and rng.random() < p:
                image, landmarks = step(image, landmarks, rng)
        if aug.colour:
            image, landmarks = colour_jitter(image, landmarks, rng)
        if aug.brightness > 0:
            image, landmarks = brightness(image, landmarks, rng, aug.brightness)
        if aug.noise > 0:
            image, landmarks = gaussian_noise(image, landmarks, rng, aug.noise)
        tensor, landmarks = to_tensor(image, landmarks, mean, std)
        if teacher is not None:
            return tensor, landmarks[idx], teacher
        return tensor, landmarks[idx]

    return apply


def eval_pipeline(task: "str | CropRule", input_size: int, indices: tuple[int, ...], mean: float, std: float):
    """Evaluation transform for a face given by its box: the same task crop
    as inference, resize, tensor. ``apply(image, landmarks, box)`` returns
    ``(tensor, (K,2) points in input pixels, Region)``."""
    idx = list(indices)

    def apply(image: np.ndarray, landmarks: np.ndarray, box: np.ndarray):
        region = task_region(task, box)
        image, landmarks = crop(image, landmarks, region)
        image, landmarks = resize(image, landmarks, input_size)
        tensor, landmarks = to_tensor(image, landmarks, mean, std)
        return tensor, landmarks[idx], region

    return apply


def region_tensor(image: np.ndarray, region: Region, input_size: int, mean: float, std: float) -> torch.Tensor:
    """The network input for ``region`` of a grayscale image: :func:`crop`,
    :func:`resize`, :func:`to_tensor` (what inference feeds the model)."""
    none = np.zeros((0, 2), np.float32)
    img, _ = crop(image, none, region)
    img, _ = resize(img, none, input_size)
    tensor, _ = to_tensor(img, none, mean, std)
    return tensor


def region_to_image(points: np.ndarray, region: Region, input_size: int) -> np.ndarray:
    """Map ``(K, 2)`` points from model input pixels back to the image the
    region was cut from (inverse of :func:`crop` then :func:`resize`)."""
    side = max(int(round(region.side)), 1)
    pts = (np.asarray(points, np.float32) + 0.5) * (side / input_size) - 0.5
    return pts + np.array([region.cx - (side - 1) / 2.0, region.cy - (side - 1) / 2.0], np.float32)
