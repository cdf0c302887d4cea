"""Drawing landmark results on images (OpenCV), and showing them (matplotlib,
imported only when a window is asked for)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .landmarks import REGIONS_68

# RGB colour per region of the 68-point scheme.
REGION_COLOURS: dict[str, tuple[int, int, int]] = {
    "jaw": (255, 200, 0),
    "right_eyebrow": (255, 110, 0),
    "left_eyebrow": (255, 110, 0),
    "nose": (0, 170, 255),
    "right_eye": (0, 230, 90),
    "left_eye": (0, 230, 90),
    "mouth": (255, 40, 90),
    "inner_mouth": (200, 0, 200),
}
BOX_COLOUR = (255, 255, 255)
EYE_MODEL_COLOUR = (0, 255, 255)
TEXT_COLOUR = (255, 255, 0)
# Regions drawn as closed polylines with --lines.
_CLOSED = ("right_eye", "left_eye", "inner_mouth")


def _colour(rgb: tuple[int, int, int], order: str) -> tuple[int, int, int]:
    return rgb[::-1] if order == "bgr" else rgb


def point_regions() -> list[str]:
    """Region name of each of the 68 points (inner mouth wins over mouth)."""
    names = [""] * 68
    for name in ("jaw", "right_eyebrow", "left_eyebrow", "nose", "right_eye", "left_eye",
                 "mouth", "inner_mouth"):
        lo, hi = REGIONS_68[name]
        for i in range(lo, hi):
            names[i] = name
    return names


_POINT_REGIONS = point_regions()
# Points of a scheme without regions, and regions without a colour above.
PLAIN_COLOUR = (0, 230, 90)
_PALETTE = ((255, 200, 0), (255, 110, 0), (0, 170, 255), (0, 230, 90), (255, 40, 90), (200, 0, 200))


def _scheme_style(n: int, scheme) -> tuple[list, list] | None:
    """Point colours and polylines ``[(positions, closed, colour)]`` of a
    :class:`common.schemes.Scheme` of ``n`` points; None for the 68 iBUG
    points, which keep the drawing below."""
    if n == 68 and (scheme is None or scheme.ibug_points == tuple(range(68))):
        return None
    colours = [PLAIN_COLOUR] * n
    lines = []
    regions = dict(scheme.regions) if scheme is not None else {}
    for k, (name, positions) in enumerate(regions.items()):
        c = REGION_COLOURS.get(name, _PALETTE[k % len(_PALETTE)])
        for p in positions:
            if p < n:
                colours[p] = c
    for positions, closed in (scheme.lines if scheme is not None else ()):
        pos = [p for p in positions if p < n]
        lines.append((pos, closed, colours[pos[0]] if pos else PLAIN_COLOUR))
    return colours, lines


def _sizes(face_box: np.ndarray) -> tuple[int, int]:
    side = float(max(face_box[2] - face_box[0], face_box[3] - face_box[1]))
    radius = max(1, int(round(side * 0.012)))
    return radius, max(1, int(round(side * 0.006)))


def _pt(p: np.ndarray, shift: int) -> tuple[int, int]:
    return int(round(float(p[0]) * (1 << shift))), int(round(float(p[1]) * (1 << shift)))


def draw_faces(image: np.ndarray, faces: Sequence, order: str = "rgb", lines: bool = False,
               boxes: bool = True, labels: Sequence[str] | None = None, scheme=None) -> np.ndarray:
    """Draw face results on ``image`` in place and return it.

    ``image`` is ``(H, W, 3)`` uint8 in colour ``order`` ("rgb" or "bgr").
    ``faces`` are :class:`common.predictor.FaceResult` (anything with ``box``,
    ``face_box``, ``score``, ``points`` (K,2), ``eye_points`` (12,2)|None,
    ``ears`` dict|None). Points are coloured by region; ``lines`` joins each
    region's points; ``labels`` adds one text line per face above its box.
    ``scheme``: the points' :class:`common.schemes.Scheme` (its regions and
    lines; None: the 68 iBUG points, or plain dots for another K).
    """
    shift = 4  # sub-pixel drawing: 1/16 px
    for n, face in enumerate(faces):
        radius, thick = _sizes(face.face_box)
        pts = np.asarray(face.points, np.float32)
        if boxes:
            b = np.asarray(face.box, np.float32)
            cv2.rectangle(image, _pt(b[:2], shift), _pt(b[2:], shift), _colour(BOX_COLOUR, order),
                          thick, cv2.LINE_AA, shift)
        style = _scheme_style(len(pts), scheme)
        if style is not None:
            colours, polylines = style
            if lines:
                for pos, closed, c in polylines:
                    poly = np.round(pts[pos] * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
                    cv2.polylines(image, [poly], closed, _colour(c, order), thick, cv2.LINE_AA, shift)
            for p, c in zip(pts, colours):
                cv2.circle(image, _pt(p, shift), radius * (1 << shift), _colour(c, order), -1, cv2.LINE_AA, shift)
        elif lines:
            for name, (lo, hi) in REGIONS_68.items():
                if name == "mouth":
                    lo, hi = 48, 60  # outer lip; the inner lip is its own region
                poly = np.round(pts[lo:hi] * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(image, [poly], name in _CLOSED or name == "mouth",
                              _colour(REGION_COLOURS[name], order), thick, cv2.LINE_AA, shift)
        for i, p in enumerate(pts if style is None else ()):
            cv2.circle(image, _pt(p, shift), radius * (1 << shift),
                       _colour(REGION_COLOURS[_POINT_REGIONS[i]], order), -1, cv2.LINE_AA, shift)
        if getattr(face, "eye_points", None) is not None:
            for p in np.asarray(face.eye_points, np.float32):
                cv2.circle(image, _pt(p, shift), max(1, radius // 2) * (1 << shift),
                           _colour(EYE_MODEL_COLOUR, order), -1, cv2.LINE_AA, shift)
        text = labels[n] if labels is not None else None
        if text:
            b = np.asarray(face.box, np.float32)
            scale = max(0.4, float(b[2] - b[0]) / 400.0)
            org = (int(b[0]), max(int(b[1]) - 2 * thick - 2, int(12 * scale) + 2))
            cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, _colour(TEXT_COLOUR, order),
                        max(1, int(round(scale * 1.5))), cv2.LINE_AA)
    return image


def face_label(face, blinks: int | None = None, face_id: int | None = None) -> str:
    """Short text for a face: id, detector score, EARs and blinks when known."""
    parts = []
    if face_id is not None:
        parts.append(f"#{face_id}")
    if getattr(face, "ears", None):
        parts.append(f"EAR R {face.ears['right']:.2f} L {face.ears['left']:.2f}")
    if blinks is not None:
        parts.append(f"blinks {blinks}")
    return "  ".join(parts)


_NON_INTERACTIVE = ("agg", "cairo", "pdf", "pgf", "ps", "svg", "template")


def display_problem() -> str | None:
    """Why no window can be shown (None: one can): matplotlib picks a
    non-interactive backend when there is no display."""
    import matplotlib
    backend = matplotlib.get_backend()
    if backend.lower() in _NON_INTERACTIVE or backend.lower().startswith("module://matplotlib_inline"):
        return (f"no window can be opened (matplotlib's backend is {backend!r}: no display, or "
                "MPLBACKEND set); write files instead, or run where a display is available")
    return None


def show_image(rgb: np.ndarray, title: str = "", block: bool = True) -> None:
    """Show an RGB image in a matplotlib window (imports matplotlib here)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 8 * rgb.shape[0] / max(rgb.shape[1], 1)))
    ax.imshow(rgb)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    plt.show(block=block)
    plt.close(fig)


class FrameViewer:
    """A matplotlib window updated frame by frame (for video and camera)."""

    def __init__(self, title: str = ""):
        import matplotlib.pyplot as plt
        self.plt = plt
        plt.ion()
        self.fig, self.ax = plt.subplots()
        self.ax.axis("off")
        self.ax.set_title(title)
        self.im = None
        self.closed = False
        self.fig.canvas.mpl_connect("close_event", self._on_close)
        self.fig.canvas.mpl_connect("key_press_event", self._on_key)

    def _on_close(self, _event) -> None:
        self.closed = True

    def _on_key(self, event) -> None:
        if event.key in ("q", "escape"):
            self.closed = True

    def update(self, rgb: np.ndarray) -> bool:
        """Show a frame; False once the user closed the window or pressed q."""
        if self.im is None:
            self.im = self.ax.imshow(rgb)
        else:
            self.im.set_data(rgb)
        self.plt.pause(0.001)
        return not self.closed

    def close(self) -> None:
        self.plt.close(self.fig)


# Head-axis colours (RGB): x red, y green, z blue.
AXIS_COLOURS: tuple[tuple[int, int, int], ...] = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


def draw_pose_axes(image: np.ndarray, pose, camera: np.ndarray | None = None, length: float = 1.0,
                   order: str = "rgb", thickness: int | None = None) -> np.ndarray:
    """Draw the head's three axes from the nose tip on ``image`` (``(H, W, 3)``
    uint8, ``order`` "rgb" or "bgr") in place and return it.

    ``pose``: a :class:`common.pose.Pose` of a face in this image; ``camera``:
    the intrinsics it was estimated with (None: ``default_camera`` of the
    image size). Axes (model frame, ``common/pose.py``), ``length`` in face
    units (1 = outer-eye-corner distance): red = x, towards the subject's
    left; green = y, down the face; blue = the way the face looks (-z, out of
    the face towards the camera when frontal). Drawn with
    ``cv2.projectPoints``.
    """
    from .pose import default_camera
    k = default_camera(image.shape[:2]) if camera is None else np.asarray(camera, np.float64)
    ends = np.array([[0, 0, 0], [length, 0, 0], [0, length, 0], [0, 0, -length]], np.float64)
    pts, _ = cv2.projectPoints(ends.reshape(-1, 1, 3), np.asarray(pose.rotation, np.float64).reshape(3, 1),
                               np.asarray(pose.translation, np.float64).reshape(3, 1), k, None)
    pts = pts.reshape(-1, 2)
    if not np.isfinite(pts).all():
        return image
    if thickness is None:
        thickness = max(1, int(round(np.linalg.norm(pts[1] - pts[0]) * 0.04)))
    shift = 4
    for end, colour in zip(pts[1:], AXIS_COLOURS):
        cv2.line(image, _pt(pts[0], shift), _pt(end, shift), _colour(colour, order), thickness,
                 cv2.LINE_AA, shift)
    return image
