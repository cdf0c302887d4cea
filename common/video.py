"""Landmarks over a stream of frames: what ``predict.py`` runs on videos and
cameras, for API users alike.

:class:`VideoLandmarker` detects, then tracks: a face's points in one frame
place its crop in the next (the landmark box of the points, the crop
convention that the refine pass uses), so a tracked frame costs one landmark
pass per face and no detection. The detector runs on the first frame, every
``detect_every`` frames (to find new faces), and on the frame after a
tracked face looks lost: its points' box jumped in size or left the image,
or (for models that report them) its point scores fell. Faces keep their
track ids, One Euro filters and blink counters
(:class:`common.tracking.FaceTracker`); the points it returns are smoothed
(unless the tracker's ``smooth`` is off), the eye aspect ratios and the
head pose come from the smoothed points, and blinks are counted on the raw
ratios (smoothing would flatten them). :func:`read_frames` reads a file or
camera past damaged frames.

    vl = VideoLandmarker(FaceLandmarker(eye_weights="default"), fps=30)
    for index, frame in read_frames(cv2.VideoCapture("clip.mp4")):   # BGR arrays
        for face, track in vl.process(frame, colour="bgr"):
            print(index, track.id, face.points.shape, track.blinks.count)
"""
from __future__ import annotations

import numpy as np

from .detector import Detection
from .landmarks import landmark_box
from .pose import estimate_pose
from .predictor import FaceLandmarker, FaceResult, eye_ratios, face_to_dict, gray_image, prepare_image
from .tracking import FaceTracker, Track

# A tracked face whose points' box changes size by more than this factor
# from one frame to the next is taken as lost (points that collapsed or
# spread over the background), and the next frame runs the detector.
MAX_SIZE_CHANGE = 1.3
# Frames between detections while tracking, and the face quality under
# which a tracked face is taken as lost; chosen with training/tools/evaluate_video.py
# (model card, "Video: tracking, and point confidence"). With the shipped face.pt a blank grey frame scores
# between 0.3 and 0.4, so 0.4 counts it as lost (tests/test_tracking.py).
DETECT_EVERY = 10
MIN_QUALITY = 0.4


class VideoLandmarker:
    """Detection, tracking, smoothing, blinks and pose for one video or
    camera stream.

    ``landmarker``: the :class:`common.predictor.FaceLandmarker` (its detector,
    models, refine and pose settings); ``tracker``: ids, smoothing, blinks
    (default: ``FaceTracker()``, smoothing on); ``fps``: frames per second,
    for the smoothing's time when :meth:`process` is given none;
    ``track``: False runs the detector (and refine) on every frame;
    ``detect_every``: frames between detections while tracking (1: every
    frame); ``min_quality``: a tracked face whose mean point score
    (``FaceResult.quality``) falls below this sends the next frame to the
    detector (models without scores: the box checks alone). ``detected`` says whether the last :meth:`process` ran the
    detector.
    """

    def __init__(self, landmarker: FaceLandmarker, tracker: FaceTracker | None = None, track: bool = True,
                 detect_every: int = DETECT_EVERY, min_quality: float = MIN_QUALITY, fps: float = 30.0):
        if detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {detect_every}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        tracker = tracker if tracker is not None else FaceTracker()
        self.fl, self.tracker, self.track, self.detect_every = landmarker, tracker, track, detect_every
        self.fps = fps
        self.min_quality = min_quality
        self.frame = -1
        self.detected = False
        self._since_detection = 0
        self._faces: list[FaceResult] = []
        self._tracks: list[Track] = []
        self._lost = True

    def process(self, frame: np.ndarray, colour: str = "bgr",
                time: float | None = None) -> list[tuple[FaceResult, Track]]:
        """Faces of one frame with their tracks, left to right on detection
        frames, in track order otherwise (``frame``: see
        :func:`common.predictor.prepare_image`; ``time``: its time in
        seconds, increasing; default: frames so far / ``fps``). Points, eye
        points, eye ratios and pose are smoothed; ``track.blinks.count``: the
        face's blinks so far (with an eye model)."""
        self.frame += 1
        t = self.frame / self.fps if time is None else time
        self._since_detection += 1
        detect = (not self.track or self._lost or not self._faces
                  or self._since_detection >= self.detect_every)
        if detect:
            rgb, gray = prepare_image(frame, colour)
            faces = self.fl.landmarks_for_detections(gray, self.fl.detector.detect(rgb), pose=False)
            tracks = self.tracker.match([f.box for f in faces])
            self._since_detection = 0
            self._lost = False
        else:  # the landmark pass needs only the gray image
            faces, tracks = self._follow(gray_image(frame, colour))
        self.detected = detect
        for f, tr in zip(faces, tracks):
            self._smooth(f, tr, t, frame.shape[:2])
        # The next frame's crops follow the smoothed points: a steadier crop.
        self._faces, self._tracks = faces, tracks
        return list(zip(faces, tracks))

    def _smooth(self, f: FaceResult, tr: Track, t: float, size: tuple[int, int]) -> None:
        side = float(max(f.face_box[2] - f.face_box[0], f.face_box[3] - f.face_box[1]))
        f.points = self.tracker.filter(tr, "points", f.points, t, side)
        if self.fl.pose:
            f.pose = estimate_pose(self.fl.ibug68(f.points), size)
        if f.eye_points is not None:
            tr.blinks.update(float(np.mean(list(f.ears.values()))))
            f.eye_points = self.tracker.filter(tr, "eyes", f.eye_points, t, side)
            f.ears = eye_ratios(f.eye_points)

    def frame_dict(self, pairs: list[tuple[FaceResult, Track]], index: int, time: float) -> dict:
        """One frame's JSON record (README.md, *JSON*: ``videos[].frames``)."""
        return {"index": index, "time": round(time, 4), "detected": self.detected,
                "faces": [face_to_dict(f, tr.id, blinks=tr.blinks.count if f.eye_points is not None else None)
                          for f, tr in pairs]}

    def _follow(self, gray: np.ndarray) -> tuple[list[FaceResult], list[Track]]:
        """One landmark pass per tracked face, each cropped around its
        previous points; marks the stream lost when a face looks lost."""
        h, w = gray.shape[:2]
        old = [landmark_box(f.points) for f in self._faces]
        dets = [Detection(f.box, b, None) for f, b in zip(self._faces, old)]
        faces = self.fl.landmarks_for_detections(gray, dets, refine=False, pose=False)
        kept_faces, kept_tracks = [], []
        for f, prev, tr in zip(faces, old, self._tracks):
            new = landmark_box(f.points)
            side_old, side_new = prev[2] - prev[0], new[2] - new[0]
            ratio = side_new / max(side_old, 1e-6)
            cx, cy = (new[0] + new[2]) / 2, (new[1] + new[3]) / 2
            if not (1 / MAX_SIZE_CHANGE <= ratio <= MAX_SIZE_CHANGE) or not (0 <= cx < w and 0 <= cy < h):
                self._lost = True
                continue
            if f.point_scores is not None and float(np.mean(f.point_scores)) < self.min_quality:
                self._lost = True
            # The detector-convention box moves and scales with the points.
            scale = side_new / max(side_old, 1e-6)
            pc = np.array([(prev[0] + prev[2]) / 2, (prev[1] + prev[3]) / 2])
            b = np.asarray(f.box, np.float32)
            bc = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
            c = np.array([cx, cy]) + (bc - pc) * scale
            half = np.array([b[2] - b[0], b[3] - b[1]]) * scale / 2
            f.box = np.r_[c - half, c + half].astype(np.float32)
            kept_faces.append(f)
            kept_tracks.append(tr)
        self.tracker.advance(kept_tracks, [f.box for f in kept_faces])
        return kept_faces, kept_tracks


def read_frames(cap, expected: int | None = None, stats: dict | None = None):
    """``(index, frame)`` for every frame of an open ``cv2.VideoCapture``
    (BGR arrays). Frames that cannot be decoded are skipped while the
    container says more follow (``expected``: default its frame count; 0 for
    a camera: reading stops at the first failure); each failed read uses up
    one packet, so reading on finds the frames after a damaged stretch.
    ``stats``, when given, counts ``"read"`` and ``"skipped"`` frames."""
    import cv2
    if expected is None:
        expected = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
    stats = stats if stats is not None else {}
    stats.setdefault("read", 0)
    stats.setdefault("skipped", 0)
    while True:
        ok, frame = cap.read()
        index = stats["read"] + stats["skipped"]
        if not ok or frame is None:
            if index < expected:
                stats["skipped"] += 1
                continue
            return
        stats["read"] += 1
        yield index, frame
