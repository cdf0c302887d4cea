"""Video helpers: One Euro smoothing of landmarks, face tracks matched by box
IoU across frames, and an eye-blink counter. Pure numpy (no torch, no cv2).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .detector import iou


# One Euro settings, tuned with training/tools/evaluate_video.py on training photos
# (weights/README.md, "Video: tracking, and point confidence"): a still face's
# jitter falls to a seventh of the raw points' at +0.02 NME on moving faces
# (beta 5, the earlier default, smoothed more and lagged: +0.43).
MIN_CUTOFF, BETA = 1.0, 50.0


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter (Casiez, Roussel and Vogel, CHI 2012) on an array of
    any shape, each element filtered independently.

    A low-pass filter whose cut-off rises with speed: still points are
    smoothed strongly (jitter goes away), fast moves pass with little lag.
    ``scale`` divides the speed before it raises the cut-off, so that with
    ``scale`` = the face size in pixels ``beta`` is in face sizes per second
    and the same settings suit small and large faces. The defaults
    (:data:`MIN_CUTOFF`, :data:`BETA`), on a 200 px face at 30 frames/s: 0.5 px
    jitter drops below 0.3 px, and a move of 2 face sizes per second lags by
    under 1 px (tests/test_tracking.py).
    """

    def __init__(self, min_cutoff: float | None = None, beta: float | None = None, d_cutoff: float = 1.0):
        min_cutoff = MIN_CUTOFF if min_cutoff is None else min_cutoff
        beta = BETA if beta is None else beta
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    def reset(self) -> None:
        self.x = self.dx = self.t = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filtered value of ``x`` observed at time ``t`` (seconds, increasing)."""
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or self.t is None or t <= self.t or x.shape != self.x.shape:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.astype(np.float32)
        dt = t - self.t
        dx = (x - self.x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1.0 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx) / max(scale, 1e-6)
        tau = 1.0 / (2.0 * math.pi * cutoff)
        a = 1.0 / (1.0 + tau / dt)
        self.x = a * x + (1.0 - a) * self.x
        self.t = t
        return self.x.astype(np.float32)


class BlinkCounter:
    """Counts blinks from a stream of eye aspect ratios (EAR, one value per
    frame, usually the mean of both eyes of one face).

    A frame counts as closed when its EAR drops below ``ratio`` times the
    face's own open-eye EAR: the median of its last ``window`` frames that
    were not closed (no frame counts as closed before ``warmup`` such
    frames are known). Open eyes differ between faces and expressions (a
    smile narrows them), so a fixed threshold miscounts; with ``threshold``
    set, that fixed EAR is used instead. A blink is a run of at least
    ``min_frames`` closed frames, counted when the eye opens again.
    """

    def __init__(self, threshold: float | None = None, min_frames: int = 2, ratio: float = 0.7,
                 window: int = 90, warmup: int = 10):
        self.threshold, self.min_frames, self.ratio, self.warmup = threshold, min_frames, ratio, warmup
        self.open_ears: deque[float] = deque(maxlen=window)
        self.count = 0
        self.closed_frames = 0

    @property
    def closed(self) -> bool:
        return self.closed_frames >= self.min_frames

    @property
    def baseline(self) -> float | None:
        """The face's open-eye EAR so far (None until ``warmup`` frames)."""
        if len(self.open_ears) < self.warmup:
            return None
        return float(np.median(self.open_ears))

    def is_closed(self, ear: float) -> bool:
        if self.threshold is not None:
            return ear < self.threshold
        base = self.baseline
        return base is not None and ear < self.ratio * base

    def update(self, ear: float) -> bool:
        """Feed one frame's EAR; True when this frame ends a blink."""
        if self.is_closed(ear):
            self.closed_frames += 1
            return False
        self.open_ears.append(float(ear))
        ended = self.closed_frames >= self.min_frames
        self.closed_frames = 0
        if ended:
            self.count += 1
        return ended


@dataclass
class Track:
    """One face followed across frames."""
    id: int
    box: np.ndarray
    last_seen: int
    filters: dict = field(default_factory=dict)
    blinks: BlinkCounter | None = None


class FaceTracker:
    """Matches each frame's faces to the previous frames' by box IoU (greedy,
    best pairs first) so that every face keeps its own smoothing filters and
    blink counter. A track unseen for ``max_missing`` frames is dropped."""

    def __init__(self, smooth: bool = True, iou_threshold: float = 0.3, max_missing: int = 15,
                 min_cutoff: float = MIN_CUTOFF, beta: float = BETA,
                 ear_threshold: float | None = None, blink_frames: int = 2, blink_ratio: float = 0.7):
        self.smooth, self.iou_threshold, self.max_missing = smooth, iou_threshold, max_missing
        self.min_cutoff, self.beta = min_cutoff, beta
        self.ear_threshold, self.blink_frames, self.blink_ratio = ear_threshold, blink_frames, blink_ratio
        self.tracks: list[Track] = []
        self.counters: dict[int, BlinkCounter] = {}  # every track ever seen
        self.next_id = 1
        self.frame = -1

    def match(self, boxes: list[np.ndarray]) -> list[Track]:
        """Assign a track to each box of the current frame (new tracks for
        unmatched boxes); returns the tracks in the order of ``boxes``."""
        self.frame += 1
        self.tracks = [t for t in self.tracks if self.frame - t.last_seen <= self.max_missing]
        pairs = sorted(((iou(b, t.box), i, j) for i, b in enumerate(boxes)
                        for j, t in enumerate(self.tracks)), reverse=True)
        out: list[Track | None] = [None] * len(boxes)
        used: set[int] = set()
        for v, i, j in pairs:
            if v < self.iou_threshold:
                break
            if out[i] is None and j not in used:
                out[i] = self.tracks[j]
                used.add(j)
        for i, b in enumerate(boxes):
            if out[i] is None:
                counter = BlinkCounter(self.ear_threshold, self.blink_frames, self.blink_ratio)
                out[i] = Track(self.next_id, b, self.frame, blinks=counter)
                self.counters[self.next_id] = counter
                self.next_id += 1
                self.tracks.append(out[i])
            out[i].box = np.asarray(b, np.float32)
            out[i].last_seen = self.frame
        return out  # type: ignore[return-value]

    def advance(self, tracks: list[Track], boxes: list[np.ndarray]) -> None:
        """A frame whose faces were followed rather than detected: ``tracks``
        are still seen, at ``boxes``; the others age as in :meth:`match`."""
        self.frame += 1
        for t, b in zip(tracks, boxes):
            t.box = np.asarray(b, np.float32)
            t.last_seen = self.frame
        self.tracks = [t for t in self.tracks if self.frame - t.last_seen <= self.max_missing]

    def filter(self, track: Track, name: str, value: np.ndarray, t: float, scale: float) -> np.ndarray:
        """Smoothed ``value`` (e.g. a face's points) for ``track``; unchanged
        when smoothing is off."""
        if not self.smooth:
            return np.asarray(value, np.float32)
        f = track.filters.get(name)
        if f is None:
            f = track.filters[name] = OneEuroFilter(self.min_cutoff, self.beta)
        return f(value, t, scale)

    @property
    def total_blinks(self) -> dict[int, int]:
        """Blink count per track id, for every face seen so far."""
        return {k: c.count for k, c in self.counters.items()}
