r"""Landmarks in video against exact ground truth: accuracy, jitter and lag
of what ``predict.py`` runs, per setting.

    python training/tools/evaluate_video.py \
        --data ../shared/data/300w-subset/labels_300w_subset_train.xml --split heldout

Each of ``--photos`` annotated photos (the part of ``--data`` that the face
model's training run held out) becomes one video per motion, ``--frames``
frames of 640 x 480: a still face, a smooth pan, a zoom, and an in-plane
rotation of the photo (a similarity warp per frame, so the warped annotation
is exact ground truth), with fresh sensor noise on every frame (a still
face's points then move only as the model's do). Every video runs through
``common.video.VideoLandmarker`` exactly as ``predict.py`` runs it, for
each setting: detect every frame or track (each ``--detect-every``), with
the One Euro smoothing on and off (``--min-cutoff``, ``--beta``: its
settings; default: ``common/tracking.py``'s). Printed per setting:

- NME on the still face and on the moving ones (mean over frames of each
  frame's NME, outer-eye-corner normalisation), and its change from the
  first to the last 100 frames (drift);
- jitter: frame-to-frame point motion beyond the ground truth's (mean over
  points and frames of |predicted step - true step|), in % of the
  eye-corner distance, on the still face and on the moving ones;
- lag on the moving faces: the delay in frames at which the ground truth
  best matches the points (0: none);
- frames without the face, and frames/s (network and detector only: frames
  are made in memory, not decoded).

A plot of NME per frame goes to ``--plot``; the last line is machine-readable.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from common.model_options import add_device_argument, add_weights_argument  # noqa: E402

MOTIONS = ("still", "pan", "zoom", "rotate")
SIZE = (480, 640)   # (height, width) of the videos
NOISE = 3.0         # sensor noise, standard deviation in grey levels
MAX_LAG = 8         # frames of delay searched for the lag


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_argument(p, "face model")
    p.add_argument("--data", required=True, help="annotated faces (dlib XML, .pts folder or keypoints CSV)")
    p.add_argument("--split", choices=("all", "heldout", "train"), default="heldout",
                   help="heldout/train: the part of --data that the face model's run held out / trained on")
    p.add_argument("--photos", type=int, default=2, help="photos to make videos of (evenly spread)")
    p.add_argument("--frames", type=int, default=300, help="frames per video")
    p.add_argument("--detect-every", type=int, nargs="+", default=None, metavar="N",
                   help="tracking settings to measure (default: common/video.py's DETECT_EVERY)")
    p.add_argument("--no-detect-every-frame", dest="every_frame", action="store_false",
                   help="leave out the detect-every-frame settings (tracking alone: for tuning)")
    p.add_argument("--smooth", choices=("both", "on", "off"), default="both",
                   help="settings with the One Euro smoothing on, off, or both")
    p.add_argument("--min-cutoff", type=float, default=None, metavar="HZ",
                   help="One Euro minimum cut-off (default: common/tracking.py's FaceTracker)")
    p.add_argument("--beta", type=float, default=None,
                   help="One Euro speed coefficient (default: common/tracking.py's FaceTracker)")
    add_device_argument(p)
    p.add_argument("--plot", default="runs/eval_video/nme_per_frame.png", help="NME per frame (PNG)")
    p.add_argument("--force", action="store_true", help="replace an existing --plot")
    return p


def motion_matrix(motion: str, t: float, photo_size: tuple[int, int], face_box: np.ndarray) -> np.ndarray:
    """2x3 similarity taking photo pixels to frame pixels at time ``t`` in
    [0, 1]: the face centred with its box a third of the frame height, then
    moved smoothly (pan: +-20% of the width; zoom: 0.75-1.35x; rotate:
    +-25 degrees about the face)."""
    import cv2
    h, w = SIZE
    cx, cy = (face_box[0] + face_box[2]) / 2, (face_box[1] + face_box[3]) / 2
    base = (h / 3) / max(face_box[2] - face_box[0], face_box[3] - face_box[1])
    angle, scale, dx = 0.0, 1.0, 0.0
    wave = np.sin(2 * np.pi * t)
    if motion == "pan":
        dx = 0.2 * w * wave
    elif motion == "zoom":
        scale = float(np.exp(np.log(1.35) * (wave + 1) / 2 + np.log(0.75) * (1 - wave) / 2))
    elif motion == "rotate":
        angle = 25.0 * wave
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, base * scale)
    m[:, 2] += np.array([w / 2 + dx, h / 2]) - np.array([cx, cy])
    return m


def run_video(frames_of, gt_of, n: int, make_stream) -> tuple[np.ndarray, np.ndarray, float]:
    """Points per frame ``(n, K, 2)`` (NaN where the face was not found),
    ground truth ``(n, K, 2)``, and frames/s."""
    from common.landmarks import landmark_box
    from common.detector import iou
    stream = make_stream()
    gts = np.stack([gt_of(i) for i in range(n)])
    pts, busy = np.full(gts.shape, np.nan, np.float32), 0.0
    for i in range(n):
        frame = frames_of(i)
        t0 = time.perf_counter()
        pairs = stream.process(frame, colour="bgr")
        busy += time.perf_counter() - t0
        gbox = landmark_box(gts[i])
        best = max(pairs, key=lambda p: iou(landmark_box(p[0].points), gbox), default=None)
        if best is not None and iou(landmark_box(best[0].points), gbox) > 0.3:
            pts[i] = best[0].points
    return pts, gts, n / max(busy, 1e-9)


def video_scores(pts: np.ndarray, gts: np.ndarray) -> dict:
    """NME per frame (inf where the face was missed), jitter (mean, in % of
    the eye-corner distance) and lag (frames) of one video."""
    from common.landmarks import OUTER_EYE_CORNERS
    a, b = OUTER_EYE_CORNERS
    iod = np.linalg.norm(gts[:, a] - gts[:, b], axis=1)                          # (n,)
    nme = 100 * np.linalg.norm(pts - gts, axis=2).mean(1) / iod
    nme = np.where(np.isfinite(nme), nme, np.inf)
    step = np.linalg.norm(np.diff(pts, axis=0) - np.diff(gts, axis=0), axis=2).mean(1) / iod[1:]
    jitter = 100 * float(np.nanmean(step)) if np.isfinite(step).any() else float("nan")
    # Lag: the delay d at which the ground truth d frames back fits the points best,
    # refined between whole frames by a parabola through the best and its neighbours.
    err = [np.nanmean(np.linalg.norm(pts[MAX_LAG:] - gts[MAX_LAG - d:len(gts) - d], axis=2))
           for d in range(MAX_LAG + 1)]
    d = int(np.nanargmin(err))
    lag = float(d)
    if 0 < d < MAX_LAG:
        den = err[d - 1] - 2 * err[d] + err[d + 1]
        lag += 0.5 * (err[d - 1] - err[d + 1]) / den if den > 0 else 0.0
    return {"nme": nme, "jitter": jitter, "lag": lag}


def plot(curves: dict, path: str) -> None:
    from common.plots import new_figure, save_figure
    fig, ax = new_figure(figsize=(8, 4))
    for label, nmes in curves.items():
        ax.plot(np.where(np.isfinite(nmes), nmes, np.nan), label=label, lw=1)
    ax.set_xlabel("frame (videos one after another)")
    ax.set_ylabel("NME (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(args: argparse.Namespace) -> int:
    import cv2
    from common.cli import output_problem
    from common.dataset import records_of_split
    from common.errors import InputError
    from common.images import read_image
    from common.landmarks import landmark_box
    from common.predictor import FaceLandmarker
    from common.progress import Progress
    from common.readers import dataset_name, read_datasets
    from common.tracking import FaceTracker
    from common.video import DETECT_EVERY, VideoLandmarker

    problem = output_problem(args.plot, args.data, args.force)
    if problem:
        raise InputError(problem)
    if args.frames < 200 or args.photos < 1:
        raise InputError("--frames must be at least 200 (first and last 100 are compared), --photos at least 1")
    if any(v is not None and not v > 0 for v in (args.min_cutoff, args.beta)):
        raise InputError("--min-cutoff and --beta must be positive")
    fl = FaceLandmarker(args.weights, device=args.device)
    for line in fl.choice_lines():
        print(line, file=sys.stderr)
    name = dataset_name(args.data)
    records = records_of_split(read_datasets([args.data]), fl.face_model.description.get("config", {}), name,
                               args.split, fl.weights)
    if not records:
        raise InputError(f"no faces in {args.data} [{args.split}]")
    picks = [records[int(k)] for k in np.linspace(0, len(records) - 1, args.photos).round()]
    filt = {k: v for k, v in (("min_cutoff", args.min_cutoff), ("beta", args.beta)) if v is not None}
    smooths = {"both": (True, False), "on": (True,), "off": (False,)}[args.smooth]
    settings = [(f"{'detect every frame' if n == 1 and not track else f'track, detect every {n}'}, "
                 f"{'smoothed' if smooth else 'raw'}", track, n, smooth)
                for track, n in [(False, 1)] * args.every_frame + [(True, n) for n in (args.detect_every or [DETECT_EVERY])]
                for smooth in smooths]
    scores = {label: {m: [] for m in MOTIONS} for label, *_ in settings}
    fps = {label: [] for label, *_ in settings}
    bar = Progress(len(picks) * len(MOTIONS) * len(settings), desc="videos", unit="videos")
    done = 0
    for k, r in enumerate(picks):
        photo = cv2.cvtColor(read_image(r.image_path), cv2.COLOR_RGB2BGR)
        box = landmark_box(r.points)
        for motion in MOTIONS:
            mats = [motion_matrix(motion, i / args.frames, photo.shape[:2], box) for i in range(args.frames)]

            def frame_of(i, mats=mats, seed=(k, MOTIONS.index(motion))):
                frame = cv2.warpAffine(photo, mats[i], (SIZE[1], SIZE[0]), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
                noise = np.random.default_rng((*seed, i)).normal(0, NOISE, frame.shape)
                return np.clip(frame + noise, 0, 255).astype(np.uint8)

            def gt_of(i, mats=mats):
                return (r.points @ mats[i][:, :2].T + mats[i][:, 2]).astype(np.float32)

            for label, track, n, smooth in settings:
                def make(track=track, n=n, smooth=smooth):
                    return VideoLandmarker(fl, FaceTracker(smooth=smooth, **filt), track=track, detect_every=n)
                pts, gts, rate = run_video(frame_of, gt_of, args.frames, make)
                scores[label][motion].append(video_scores(pts, gts))
                fps[label].append(rate)
                done += 1
                bar.update(done, done)
    bar.close()
    tracker = FaceTracker(**filt)
    print(f"weights: {fl.weights}; data: {args.data} [{args.split}], {len(picks)} photos x {len(MOTIONS)} "
          f"motions ({', '.join(MOTIONS)}) x {args.frames} frames of {SIZE[1]}x{SIZE[0]}, noise {NOISE} grey "
          f"levels; One Euro min_cutoff {tracker.min_cutoff}, beta {tracker.beta}")
    print("NME and jitter in % of the eye-corner distance; lag in frames; moving: pan, zoom, rotate")
    print(f"{'setting':>34}  {'NME still':>9}  {'NME moving':>10}  {'drift':>6}  {'jitter still':>12}  "
          f"{'jitter moving':>13}  {'lag':>5}  {'missed':>7}  {'frames/s':>8}")
    summary = []
    for label, *_ in settings:
        moving = [s for m in MOTIONS[1:] for s in scores[label][m]]
        still = scores[label]["still"]
        v = np.stack([s["nme"] for m in MOTIONS for s in scores[label][m]])      # (videos, frames)
        mv = np.stack([s["nme"] for s in moving])
        first, last = mv[:, :100], mv[:, -100:]
        row = {"nme_still": _finite_mean(np.stack([s["nme"] for s in still])), "nme_moving": _finite_mean(mv),
               "drift": _finite_mean(last) - _finite_mean(first),
               "jitter_still": float(np.mean([s["jitter"] for s in still])),
               "jitter_moving": float(np.mean([s["jitter"] for s in moving])),
               "lag": float(np.mean([s["lag"] for s in moving])),
               "missed": int((~np.isfinite(v)).sum()), "frames": int(v.size), "fps": float(np.mean(fps[label]))}
        summary.append((label, row))
        print(f"{label:>34}  {row['nme_still']:9.2f}  {row['nme_moving']:10.2f}  {row['drift']:+6.2f}  "
              f"{row['jitter_still']:12.3f}  {row['jitter_moving']:13.3f}  {row['lag']:5.2f}  "
              f"{row['missed']:>3}/{row['frames']:<3}  {row['fps']:8.1f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
    plot({label: np.concatenate([s["nme"] for m in MOTIONS for s in scores[label][m]])
          for label, *_ in settings}, args.plot)
    print(f"plot: {args.plot}")
    print(" ".join(f"{label.replace(' ', '_').replace(',', '')}:" + ",".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        for label, row in summary))
    return 0


def _finite_mean(a: np.ndarray) -> float:
    return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else float("nan")


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
