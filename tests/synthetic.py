"""Tiny generated faces and dataset files for the tests.

The 68-point template below is written out by hand from the iBUG / 300-W
layout (it does not use ``common.landmarks``), so the tests that mirror it
check the library's flip pairs against an independent description.
Coordinates are in face units: x to the right of the photo, y down, the face
about one unit wide, centred on the origin.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image


def _template() -> np.ndarray:
    pts = np.zeros((68, 2), np.float64)
    # Jaw 0-16: from the subject's right ear (left of the photo) round the chin.
    t = np.arange(17) / 16.0
    pts[0:17, 0] = -0.5 * np.cos(np.pi * t)
    pts[0:17, 1] = -0.05 + 0.6 * np.sin(np.pi * t)
    # Brows 17-21 (left of the photo, outer to inner), 22-26 (inner to outer).
    right_brow = [(-0.42, -0.30), (-0.34, -0.35), (-0.25, -0.37), (-0.16, -0.36), (-0.08, -0.33)]
    left_brow = [(0.08, -0.33), (0.16, -0.36), (0.25, -0.37), (0.34, -0.35), (0.42, -0.30)]
    pts[17:22] = right_brow
    pts[22:27] = left_brow
    # Nose bridge 27-30, nostrils 31-35 (left to right of the photo).
    pts[27:31] = [(0.0, -0.20), (0.0, -0.10), (0.0, 0.0), (0.0, 0.10)]
    pts[31:36] = [(-0.09, 0.17), (-0.045, 0.19), (0.0, 0.20), (0.045, 0.19), (0.09, 0.17)]
    # Eyes, each clockwise on screen from its left-most corner.
    pts[36:42] = [(-0.32, -0.15), (-0.26, -0.19), (-0.18, -0.19), (-0.12, -0.15),
                  (-0.18, -0.11), (-0.26, -0.11)]
    pts[42:48] = [(0.12, -0.15), (0.18, -0.19), (0.26, -0.19), (0.32, -0.15),
                  (0.26, -0.11), (0.18, -0.11)]
    # Outer lip 48-59 (clockwise from the left corner), inner lip 60-67.
    pts[48:60] = [(-0.20, 0.33), (-0.13, 0.28), (-0.05, 0.26), (0.0, 0.27), (0.05, 0.26),
                  (0.13, 0.28), (0.20, 0.33), (0.13, 0.39), (0.05, 0.42), (0.0, 0.43),
                  (-0.05, 0.42), (-0.13, 0.39)]
    pts[60:68] = [(-0.15, 0.33), (-0.05, 0.31), (0.0, 0.31), (0.05, 0.31), (0.15, 0.33),
                  (0.05, 0.36), (0.0, 0.37), (-0.05, 0.36)]
    return pts


TEMPLATE = _template()

# Poly-lines of the drawing (closed ones marked True).
_STROKES = [(range(0, 17), False), (range(17, 22), False), (range(22, 27), False),
            (range(27, 31), False), (range(31, 36), False), (range(36, 42), True),
            (range(42, 48), True), (range(48, 60), True), (range(60, 68), True)]


def face_points(rng: np.random.Generator, height: int = 64, width: int = 80,
                min_side: float = 28.0, max_side: float = 40.0,
                max_angle: float = 10.0) -> np.ndarray:
    """The template scaled, rotated and shifted at random inside a
    ``height x width`` image; float32 ``(68, 2)`` pixel ``(x, y)``."""
    side = rng.uniform(min_side, max_side)
    a = np.deg2rad(rng.uniform(-max_angle, max_angle))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = TEMPLATE @ rot.T * side
    lo, hi = pts.min(0), pts.max(0)
    margin = 2.0
    cx = rng.uniform(margin - lo[0], width - 1 - margin - hi[0])
    cy = rng.uniform(margin - lo[1], height - 1 - margin - hi[1])
    return (pts + [cx, cy]).astype(np.float32)


def draw_face(points: np.ndarray, height: int = 64, width: int = 80,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """An RGB uint8 ``(height, width, 3)`` picture: a grey face blob with the
    features drawn as lines through the landmarks and a bright dot on each."""
    rng = rng or np.random.default_rng(0)
    img = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    shift = 4  # cv2 sub-pixel drawing: coordinates in 1/16 px
    p = np.round(np.asarray(points, np.float64) * (1 << shift)).astype(np.int32)
    hull = cv2.convexHull(p[:27])
    cv2.fillConvexPoly(img, hull, (90, 80, 70), lineType=cv2.LINE_AA, shift=shift)
    for idx, closed in _STROKES:
        cv2.polylines(img, [p[list(idx)]], closed, (170, 170, 170), 1, cv2.LINE_AA, shift)
    for q in p:
        cv2.circle(img, tuple(int(v) for v in q), 1 << shift, (255, 255, 255), -1,
                   cv2.LINE_AA, shift)
    return img


def make_face(rng: np.random.Generator, height: int = 64, width: int = 80):
    """``(image RGB uint8, points float32 (68, 2))`` of one random synthetic face."""
    pts = face_points(rng, height, width)
    return draw_face(pts, height, width, rng), pts


def save_image(path: str, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(image).save(path)


def blob_image(points: np.ndarray, height: int, width: int, sigma: float = 1.5) -> np.ndarray:
    """Float32 image with one Gaussian blob (peak 255) centred exactly on each point."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width), np.float32)
    for x, y in np.asarray(points, np.float32):
        img = np.maximum(img, 255.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)))
    return img


def blob_centre(image: np.ndarray, near: np.ndarray, radius: int = 4) -> np.ndarray:
    """Intensity-weighted centre ``(x, y)`` of the image in a window around ``near``."""
    x0, y0 = int(round(near[0])), int(round(near[1]))
    h, w = image.shape[:2]
    ys = slice(max(y0 - radius, 0), min(y0 + radius + 1, h))
    xs = slice(max(x0 - radius, 0), min(x0 + radius + 1, w))
    win = image[ys, xs].astype(np.float64)
    win = np.clip(win - 0.2 * win.max(), 0, None)  # ignore the tails of neighbouring blobs
    yy, xx = np.mgrid[ys, xs]
    return np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])


def well_inside(point: np.ndarray, size: int, margin: float) -> bool:
    """Whether ``point`` is at least ``margin`` pixels inside a ``size`` square."""
    return bool(np.all(point >= margin) and np.all(point <= size - 1 - margin))


# --- dataset files ------------------------------------------------------------------------

def write_dlib_xml(xml_path: str, images: list[tuple[str, list[np.ndarray]]],
                   parts_override: dict | None = None) -> None:
    """dlib/imglab XML: ``images`` is ``[(file relative to the XML, [points, ...]), ...]``,
    one ``<box>`` (the points' bounding box) per points array. Points are
    written with two decimals. ``parts_override`` maps ``(image #, box #)`` to a
    list of ``(name, x, y)`` strings replacing that box's parts."""
    lines = ["<?xml version='1.0' encoding='ISO-8859-1'?>", "<dataset>", "<images>"]
    for i, (rel, faces) in enumerate(images):
        lines.append(f"  <image file='{rel}'>")
        for j, pts in enumerate(faces):
            x0, y0 = np.floor(pts.min(0)).astype(int)
            x1, y1 = np.ceil(pts.max(0)).astype(int)
            lines.append(f"    <box top='{y0}' left='{x0}' width='{x1 - x0 + 1}' height='{y1 - y0 + 1}'>")
            parts = (parts_override or {}).get((i, j))
            if parts is None:
                parts = [(f"{k:02d}", f"{x:.2f}", f"{y:.2f}") for k, (x, y) in enumerate(pts)]
            for name, x, y in parts:
                lines.append(f"      <part name='{name}' x='{x}' y='{y}'/>")
            lines.append("    </box>")
        lines.append("  </image>")
    lines += ["</images>", "</dataset>"]
    os.makedirs(os.path.dirname(os.path.abspath(xml_path)), exist_ok=True)
    with open(xml_path, "w", encoding="ISO-8859-1") as f:
        f.write("\n".join(lines) + "\n")


def pts_text(points_0based: np.ndarray, n_points: int | None = None) -> str:
    """A 300-W ``.pts`` file body (1-based coordinates, as in the original release)."""
    n = len(points_0based) if n_points is None else n_points
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points_0based)
    return f"version: 1\nn_points:  {n}\n{{\n{body}\n}}\n"


def write_pts(path: str, points_0based: np.ndarray) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(pts_text(points_0based))


def csv_header(n_values: int = 136) -> str:
    return "," + ",".join(f"{k}" for k in range(n_values))


def csv_row(name: str, points: np.ndarray) -> str:
    return name + "," + ",".join(f"{v:.3f}" for v in np.asarray(points).reshape(-1))


def write_keypoints_csv(csv_path: str, rows: list[tuple[str, np.ndarray]]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    with open(csv_path, "w") as f:
        f.write(csv_header(2 * len(rows[0][1]) if rows else 136) + "\n")
        for name, pts in rows:
            f.write(csv_row(name, pts) + "\n")


def synthetic_xml_dataset(folder: str, n: int, seed: int, name: str = "faces.xml",
                          height: int = 64, width: int = 80) -> str:
    """``n`` generated faces (one per PNG) under ``folder/img`` and their XML; returns its path."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        img, pts = make_face(rng, height, width)
        rel = f"img/{os.path.splitext(name)[0]}-{i:03d}.png"   # one photo group per face
        save_image(os.path.join(folder, rel), img)
        entries.append((rel, [pts]))
    path = os.path.join(folder, name)
    write_dlib_xml(path, entries)
    return path


# --- other landmark schemes, derived from the 68 points ---------------------------------------
# Written out here without common.schemes, so that tests compare two descriptions.

# 5 points: the subject's right eye centre (left of the photo), left eye
# centre, nose tip, right and left mouth corners.
FIVE_FLIP = (1, 0, 2, 4, 3)


def five_points(pts68: np.ndarray) -> np.ndarray:
    """float32 ``(5, 2)`` from ``(68, 2)`` iBUG points."""
    p = np.asarray(pts68, np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]).astype(np.float32)


def _mid(p, a, b):
    return (p[a] + p[b]) / 2


def wflw98_points(pts68: np.ndarray) -> np.ndarray:
    """float32 ``(98, 2)`` in WFLW's order, interpolated along the 68-point
    contours: even contour points are the jaw points, odd ones midpoints;
    lower brows between the upper brows and the eyes; two eyelid midpoints
    per eye; pupils at the eye centres."""
    p = np.asarray(pts68, np.float64)
    out = np.zeros((98, 2))
    for i in range(17):
        out[2 * i] = p[i]
    for i in range(16):
        out[2 * i + 1] = _mid(p, i, i + 1)
    out[33:38] = p[17:22]                                   # right brow, upper, outer to inner
    for k in range(4):                                      # right brow, lower, inner to outer
        out[38 + k] = 0.8 * _mid(p, 21 - k, 20 - k) + 0.2 * p[39 - k]
    out[42:47] = p[22:27]                                   # left brow, upper, inner to outer
    for k in range(4):                                      # left brow, lower, outer to inner
        out[50 - k] = 0.8 * _mid(p, 22 + k, 23 + k) + 0.2 * p[42 + k]
    out[51:60] = p[27:36]
    out[60:68] = [p[36], p[37], _mid(p, 37, 38), p[38], p[39], p[40], _mid(p, 40, 41), p[41]]
    out[68:76] = [p[42], p[43], _mid(p, 43, 44), p[44], p[45], p[46], _mid(p, 46, 47), p[47]]
    out[76:96] = p[48:68]
    out[96], out[97] = p[36:42].mean(0), p[42:48].mean(0)
    return out.astype(np.float32)


WFLW_FLIP = tuple([32 - i for i in range(33)] + [46, 45, 44, 43, 42, 50, 49, 48, 47, 37, 36, 35, 34, 33, 41, 40, 39, 38]
                  + [51, 52, 53, 54, 59, 58, 57, 56, 55]
                  + [72, 71, 70, 69, 68, 75, 74, 73, 64, 63, 62, 61, 60, 67, 66, 65]
                  + [82, 81, 80, 79, 78, 77, 76, 87, 86, 85, 84, 83, 92, 91, 90, 89, 88, 95, 94, 93, 97, 96])


def write_wflw(txt_path: str, rows: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """WFLW annotation lines: ``[(image path relative to the image root,
    points (98, 2), box (x_min, y_min, x_max, y_max)), ...]``, attribute
    flags 0 except occlusion 1 on every other line."""
    os.makedirs(os.path.dirname(os.path.abspath(txt_path)), exist_ok=True)
    with open(txt_path, "w") as f:
        for i, (rel, pts, box) in enumerate(rows):
            nums = [f"{v:.4f}" for v in np.asarray(pts).reshape(-1)] + [f"{v:.0f}" for v in box]
            f.write(" ".join(nums + ["0", "0", "0", "0", str(i % 2), "0", rel]) + "\n")


def synthetic_scheme_dataset(folder: str, n: int, seed: int, fmt: str, name: str) -> str:
    """``n`` generated faces annotated in another scheme and format: "xml5"
    (dlib XML, 5 parts), "pts98" (a folder of .pts files, n_points 98),
    "csv5" (keypoints CSV, 10 values a row) or "wflw98" (WFLW lines, images
    under ``folder/WFLW_images``). Returns the path to pass as data."""
    rng = np.random.default_rng(seed)
    faces = [make_face(rng) for _ in range(n)]
    derive = five_points if fmt.endswith("5") else wflw98_points
    if fmt == "xml5":
        entries = []
        for i, (img, pts) in enumerate(faces):
            rel = f"img/{name}-{i:03d}.png"
            save_image(os.path.join(folder, rel), img)
            entries.append((rel, [derive(pts)]))
        path = os.path.join(folder, f"{name}.xml")
        write_dlib_xml(path, entries)
        return path
    if fmt == "pts98":
        sub = os.path.join(folder, name)
        for i, (img, pts) in enumerate(faces):
            save_image(os.path.join(sub, f"f{i:03d}.png"), img)
            write_pts(os.path.join(sub, f"f{i:03d}.pts"), derive(pts))
        return sub
    if fmt == "csv5":
        split = os.path.join(folder, name)
        rows = []
        for i, (img, pts) in enumerate(faces):
            save_image(os.path.join(split, f"c{i:03d}.png"), img)
            rows.append((f"c{i:03d}.png", derive(pts)))
        path = os.path.join(folder, f"{name}_keypoints.csv")
        write_keypoints_csv(path, rows)
        return path
    if fmt == "wflw98":
        rows = []
        for i, (img, pts) in enumerate(faces):
            rel = f"0--Synthetic/{name}_{i:03d}.png"
            save_image(os.path.join(folder, "WFLW_images", rel), img)
            p98 = derive(pts)
            rows.append((rel, p98, np.r_[np.floor(p98.min(0)) - 2, np.ceil(p98.max(0)) + 2]))
        path = os.path.join(folder, "WFLW_annotations", f"list_98pt_{name}.txt")
        write_wflw(path, rows)
        return path
    raise ValueError(fmt)
