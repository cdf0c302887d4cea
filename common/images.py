"""Reading images into one colour order (RGB uint8, or grayscale uint8)."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageReadError

# A 10000 x 10000 photo is legitimate input; PIL's bomb guard stops at ~89 Mpx.
Image.MAX_IMAGE_PIXELS = 400_000_000

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".JPG",
                    ".JPEG", ".PNG", ".BMP")


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Any image array to uint8: bool to 0/255, floats in [0, 1] scaled by 255,
    16-bit ranges (max above 255) scaled down from 65535, the rest clipped."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    top = float(arr.max(initial=0))
    if np.issubdtype(arr.dtype, np.floating) and top <= 1.0:
        return np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    hi = 65535.0 if top > 255 else 255.0
    return np.clip(arr.astype(np.float32) * (255.0 / hi) + 0.5, 0, 255).astype(np.uint8)


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """Copy an "L" or "RGB" image into a new, writable uint8 array in strips
    of rows: ``np.asarray(im)`` goes through ``tobytes()``, which briefly holds
    two full-size buffers (1.3 GB extra for a 10000 x 10000 photo)."""
    w, h = im.size
    c = len(im.getbands())
    out = np.empty((h, w, c) if c > 1 else (h, w), np.uint8)
    step = max(1, (1 << 24) // max(w * c, 1))
    for y in range(0, h, step):
        out[y:y + step] = np.asarray(im.crop((0, y, w, min(h, y + step))))
    return out


def read_image(path: str, gray: bool = False) -> np.ndarray:
    """Read an image file as RGB ``(H, W, 3)`` (or ``(H, W)`` when ``gray``) uint8.

    EXIF orientation is applied; 16-bit, palette, grayscale and RGBA files are
    converted (alpha is dropped). Raises :class:`ImageReadError` with the path.
    """
    if not os.path.exists(path):
        raise ImageReadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: is a folder, not an image")
    try:
        with Image.open(path) as im:
            # in_place and the mode check below avoid full-size copies (a
            # 10000 x 10000 photo is 400 MB inside PIL).
            ImageOps.exif_transpose(im, in_place=True)
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = to_uint8(np.asarray(im))
                if gray:
                    return np.ascontiguousarray(arr)
                return np.ascontiguousarray(np.stack([arr] * 3, axis=-1))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA").convert("RGB")
            want = "L" if gray else "RGB"
            if im.mode != want:
                im = im.convert(want)
            return _pil_to_array(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: image too large ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        msg = str(exc) or exc.__class__.__name__
        if "cannot identify image file" in msg:
            msg = "not an image file (or an unsupported format)"
        raise ImageReadError(f"{path}: {msg}") from None


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB uint8 to ``(H, W)`` uint8 with ITU-R 601 weights (as PIL's "L")."""
    if image.ndim == 2:
        return image
    import cv2
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
