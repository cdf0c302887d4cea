"""Landmarks in video against exact ground truth: tracking vs detecting every frame.

    python training/tools/evaluate_video.py \
        --data ../shared/data/300w-subset/labels_300w_subset_train.xml --split heldout

Each of ``--photos`` annotated photos (the part of ``--data`` that the face
model's training run held out) becomes one video per motion, ``--frames``
frames of 640 x 480: a smooth pan, a zoom, and an in-plane rotation of the
photo (a similarity warp per frame, so the warped annotation is exact ground
truth). Every video runs through ``common.video.VideoLandmarker`` as
``predict.py`` runs it (smoothing on, refine on), once detecting on every
frame and once tracking for each ``--detect-every`` value. Printed per
setting: NME (mean over frames of each frame's NME, outer-eye-corner
normalisation), NME over the first and the last 100 frames (drift), frames
without the face, frames/s (network and detector only: frames are made in
memory, not decoded), and a plot of NME per frame to ``--plot``.

The last line is machine-readable.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from common.model_options import add_device_argument, add_weights_argument  # noqa: E402

MOTIONS = ("pan", "zoom", "rotate")
SIZE = (480, 640)   # (height, width) of the videos


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


def run_video(frames_of, gt_of, n: int, make_stream) -> tuple[np.ndarray, float]:
    """NME per frame (inf where the face was not found) and frames/s."""
    from common.landmarks import OUTER_EYE_CORNERS, landmark_box
    from common.detector import iou
    stream = make_stream()
    nmes, busy = np.full(n, np.inf), 0.0
    a, b = OUTER_EYE_CORNERS
    for i in range(n):
        frame, gt = frames_of(i), gt_of(i)
        t0 = time.perf_counter()
        pairs = stream.process(frame, colour="bgr")
        busy += time.perf_counter() - t0
        gbox = landmark_box(gt)
        best = max(pairs, key=lambda p: iou(landmark_box(p[0].points), gbox), default=None)
        if best is not None and iou(landmark_box(best[0].points), gbox) > 0.3:
            err = np.linalg.norm(best[0].points - gt, axis=1).mean()
            nmes[i] = 100 * err / np.linalg.norm(gt[a] - gt[b])
    return nmes, n / max(busy, 1e-9)


def plot(curves: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    for label, nmes in curves.items():
        ax.plot(np.where(np.isfinite(nmes), nmes, np.nan), label=label, lw=1)
    ax.set_xlabel("frame (videos one after another)")
    ax.set_ylabel("NME (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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
    fl = FaceLandmarker(args.weights, device=args.device)
    for line in fl.choice_lines():
        print(line, file=sys.stderr)
    name = dataset_name(args.data)
    records = records_of_split(read_datasets([args.data]), fl.face_model.description.get("config", {}), name,
                               args.split, fl.weights)
    if not records:
        raise InputError(f"no faces in {args.data} [{args.split}]")
    picks = [records[int(k)] for k in np.linspace(0, len(records) - 1, args.photos).round()]
    settings = [("detect every frame", False, 1)] + [
        (f"track, detect every {n}", True, n) for n in (args.detect_every or [DETECT_EVERY])]
    results = {label: [] for label, _, _ in settings}
    fps = {label: [] for label, _, _ in settings}
    bar = Progress(len(picks) * len(MOTIONS) * len(settings), desc="videos", unit="videos")
    done = 0
    for r in picks:
        photo = cv2.cvtColor(read_image(r.image_path), cv2.COLOR_RGB2BGR)
        box = landmark_box(r.points)
        for motion in MOTIONS:
            mats = [motion_matrix(motion, i / args.frames, photo.shape[:2], box) for i in range(args.frames)]

            def frame_of(i, mats=mats):
                return cv2.warpAffine(photo, mats[i], (SIZE[1], SIZE[0]), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)

            def gt_of(i, mats=mats):
                return (r.points @ mats[i][:, :2].T + mats[i][:, 2]).astype(np.float32)

            for label, track, n in settings:
                def make(track=track, n=n):
                    return VideoLandmarker(fl, FaceTracker(smooth=True), track=track, detect_every=n)
                nmes, rate = run_video(frame_of, gt_of, args.frames, make)
                results[label].append(nmes)
                fps[label].append(rate)
                done += 1
                bar.update(done, done)
    bar.close()
    print(f"weights: {fl.weights}; data: {args.data} [{args.split}], {len(picks)} photos x {len(MOTIONS)} "
          f"motions ({', '.join(MOTIONS)}) x {args.frames} frames of {SIZE[1]}x{SIZE[0]}")
    summary = []
    for label, _, _ in settings:
        v = np.stack(results[label])                                  # (videos, frames)
        found = np.isfinite(v)
        first, last = v[:, :100], v[:, -100:]
        row = {"nme": float(v[found].mean()), "first100": float(first[np.isfinite(first)].mean()),
               "last100": float(last[np.isfinite(last)].mean()), "missed": int((~found).sum()),
               "fps": float(np.mean(fps[label]))}
        summary.append((label, row))
        print(f"{label:>24}: NME {row['nme']:.2f}%  first 100 {row['first100']:.2f}%  last 100 "
              f"{row['last100']:.2f}%  missed {row['missed']}/{v.size}  {row['fps']:.1f} frames/s")
    os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
    plot({label: np.concatenate(results[label]) for label, _, _ in settings}, args.plot)
    print(f"plot: {args.plot}")
    print(" ".join(f"{label.replace(' ', '_').replace(',', '')}:NME={row['nme']:.2f},drift={row['last100'] - row['first100']:+.2f},"
                   f"fps={row['fps']:.1f}" for label, row in summary))
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
