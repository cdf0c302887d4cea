r"""Check the head-pose estimate (common/pose.py) on held-out faces.

    python training/tools/evaluate_pose.py --weights runs/twins/face.pt \
        --data ../shared/data/300w-subset/labels_300w_subset_train.xml --split heldout

The points are the model's predictions (crop from each face's annotated
landmark box, then the second pass from the first prediction's box, as
``FaceLandmarker(refine=True)`` does), so the figures are what users get,
without detector misses. Prints:

- mirror consistency: the image mirrored and the model run on it; mean
  ``|yaw + mirrored yaw|`` and ``|roll + mirrored roll|`` (0 if the pose
  is mirror-consistent: yaw and roll change sign, pitch does not);
- in-plane rotation: the image rotated by +-``--angle`` degrees about the
  principal point (model run again); mean ``|change of roll - angle|``;
- agreement with the pose from the annotated points (mean absolute
  differences of yaw, pitch, roll);
- synthetic: the 3-D mean face projected at known angles (yaw -60..60,
  pitch -30..30, roll -30..30, 15 degree steps) and recovered: max error;
- the distribution of yaw and pitch over the faces (percentiles), and a
  histogram of yaw to ``--plot``.

The last line is machine-readable.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from common.errors import InputError  # noqa: E402
from common.model_options import add_device_argument, add_weights_argument  # noqa: E402

PERCENTILES = (5, 25, 50, 75, 95)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_argument(p, "face checkpoint (or its .onnx export)")
    p.add_argument("--data", required=True, help="annotated faces (dlib XML, .pts folder or keypoints CSV)")
    p.add_argument("--split", choices=("all", "heldout", "train"), default="heldout",
                   help="heldout/train: the part of --data that the checkpoint's run held out / trained on")
    p.add_argument("--angle", type=float, default=20.0, help="in-plane rotation for the roll check, degrees")
    add_device_argument(p)
    p.add_argument("--plot", default="runs/pose/yaw_hist.png", help="histogram of yaw (PNG)")
    p.add_argument("--force", action="store_true", help="replace an existing --plot")
    return p


def synthetic_max_error() -> float:
    """Max error (degrees) of yaw, pitch, roll recovered from the mean face
    projected at a grid of known angles."""
    from common.pose import default_camera, estimate_pose, project_shape, rotation_from_angles
    size = (480, 640)
    k = default_camera(size)
    worst = 0.0
    for angles in itertools.product(range(-60, 61, 15), range(-30, 31, 15), range(-30, 31, 15)):
        pts = project_shape(rotation_from_angles(*angles), [0.2, -0.1, 8.0], k)
        pose = estimate_pose(pts, size)
        worst = max(worst, float(np.abs(np.array([pose.yaw, pose.pitch, pose.roll]) - angles).max()))
    return worst


def yaw_histogram(yaws: np.ndarray, path: str, title: str) -> None:
    from common.plots import new_figure, save_figure
    fig, ax = new_figure(figsize=(6, 3.5))
    ax.hist(yaws, bins=np.arange(-90, 91, 5), color="tab:blue", edgecolor="white")
    ax.set_xlabel("yaw (degrees; > 0: face turned towards the image right)")
    ax.set_ylabel("faces")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(args: argparse.Namespace) -> int:
    import cv2
    from common.cli import output_problem
    from common.dataset import records_of_split
    from common.readers import dataset_name, read_datasets
    from common.device import select_device
    from common.images import read_image, rgb_to_gray
    from common.landmarks import landmark_box
    from common.pose import estimate_pose
    from common.landmark_model import LandmarkModel, refined_boxes
    from common.model_options import pick_weights
    from common.progress import Progress

    problem = output_problem(args.plot, args.data, args.force)
    if problem:
        raise InputError(problem)
    device = select_device(args.device)
    args.weights = pick_weights(args.weights, "face", device)
    model = LandmarkModel(args.weights, "face", device)
    pos = model.positions(range(68))
    records = read_datasets([args.data])
    name = dataset_name(args.data)
    records = records_of_split(records, model.description.get("config", {}), name, args.split, args.weights)
    if not records:
        raise InputError(f"no faces in {args.data} [{args.split}]")

    def predict(gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        boxes = refined_boxes(model, gray, [box])
        return model.predict_boxes(gray, boxes)[0][pos]

    rows = []   # per face: pose from annotation, prediction, mirrored, +angle, -angle
    bar = Progress(len(records), desc=f"pose on {name}", unit="faces")
    for i, r in enumerate(records):
        gray = rgb_to_gray(read_image(r.image_path))
        h, w = gray.shape
        size = (h, w)
        box = landmark_box(r.points)
        poses = [estimate_pose(r.points, size), estimate_pose(predict(gray, box), size)]
        mbox = np.array([w - 1 - box[2], box[1], w - 1 - box[0], box[3]], np.float32)
        poses.append(estimate_pose(predict(np.ascontiguousarray(gray[:, ::-1]), mbox), size))
        for angle in (args.angle, -args.angle):
            m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
            rotated = cv2.warpAffine(gray, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            pts = r.points @ m[:, :2].T + m[:, 2]
            poses.append(estimate_pose(predict(rotated, landmark_box(pts)), size))
        rows.append([[p.yaw, p.pitch, p.roll] for p in poses])
        bar.update(i + 1, i + 1)
    bar.close()
    a = np.array(rows)                       # (faces, 5, 3): yaw, pitch, roll
    gt, pred, mir, plus, minus = (a[:, k] for k in range(5))
    yaw_mirror = np.abs(pred[:, 0] + mir[:, 0]).mean()
    roll_mirror = np.abs(pred[:, 2] + mir[:, 2]).mean()
    pitch_mirror = np.abs(pred[:, 1] - mir[:, 1]).mean()
    rot_plus = np.abs((plus[:, 2] - pred[:, 2]) - args.angle).mean()
    rot_minus = np.abs((minus[:, 2] - pred[:, 2]) + args.angle).mean()
    vs_gt = np.abs(pred - gt).mean(0)
    synth = synthetic_max_error()
    yaw_pct = np.percentile(pred[:, 0], PERCENTILES)
    pitch_pct = np.percentile(pred[:, 1], PERCENTILES)

    print(f"weights: {args.weights}; data: {args.data} [{args.split}], {len(records)} faces, "
          f"points predicted (landmark boxes + refine)")
    print(f"mirror: mean |yaw + mirrored yaw| {yaw_mirror:.2f}, |roll + mirrored roll| {roll_mirror:.2f}, "
          f"|pitch - mirrored pitch| {pitch_mirror:.2f} degrees")
    print(f"rotation by +{args.angle:g} / -{args.angle:g} degrees: mean |roll change - angle| "
          f"{rot_plus:.2f} / {rot_minus:.2f} degrees")
    print(f"predicted vs annotated points: mean |difference| yaw {vs_gt[0]:.2f}, pitch {vs_gt[1]:.2f}, "
          f"roll {vs_gt[2]:.2f} degrees")
    print(f"synthetic (yaw +-60, pitch +-30, roll +-30): max error {synth:.4f} degrees")
    pct = " ".join(f"p{q}" for q in PERCENTILES)
    print(f"yaw   {pct}: " + " ".join(f"{v:.1f}" for v in yaw_pct)
          + f"; |yaw| > 30: {100 * (np.abs(pred[:, 0]) > 30).mean():.1f}%")
    print(f"pitch {pct}: " + " ".join(f"{v:.1f}" for v in pitch_pct))
    os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
    yaw_histogram(pred[:, 0], args.plot, f"Yaw, {name} [{args.split}], {len(records)} faces")
    print(f"histogram: {args.plot}")
    print(f"YAW_MIRROR={yaw_mirror:.2f} ROLL_MIRROR={roll_mirror:.2f} ROT_PLUS={rot_plus:.2f} "
          f"ROT_MINUS={rot_minus:.2f} SYNTH_MAX={synth:.4f} YAW_P50={yaw_pct[2]:.1f} n={len(records)}")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
