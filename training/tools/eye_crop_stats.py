r"""Where the 12 eye points (iBUG 36-47) fall inside the face's tight
landmark box, over annotated faces: the measurement behind the eye model's
crop constants (EYE_CENTRE_DY, EYE_CONTEXT in common/transforms.py).

    python training/tools/eye_crop_stats.py --data ../shared/data/300w-subset/labels_300w_subset_train.xml \
        ../shared/data/youtube-faces-keypoints/training_frames_keypoints.csv

Prints the 1st and 99th percentiles of the eye points' x and y, relative to
the box centre in units of the box's longer side, and checks that the eye
crop (a square of EYE_CONTEXT x the side, centred EYE_CENTRE_DY x the side
from the box centre) holds them, with the margin left for box jitter.
Faces held out for validation (``--exclude-heldout``, same split as
training) are left out.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="annotated datasets (any supported format)")
    p.add_argument("--exclude-heldout", type=float, default=0.2,
                   help="leave out this validation fraction of the photos (split seed --split-seed)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--val-from", nargs="*", default=["labels_300w_subset_train.xml"],
                   help="datasets the held-out part comes from, as in training (--val-from)")
    return p


def main(args: argparse.Namespace) -> int:
    import numpy as np
    from common.dataset import split_records
    from common.readers import read_datasets
    from common.landmarks import EYE_INDICES, landmark_box
    from common.transforms import EYE_CENTRE_DY, EYE_CONTEXT

    recs = read_datasets(args.data)
    recs, _ = split_records(recs, args.exclude_heldout, args.split_seed, args.val_from or None)
    rel = []
    for r in recs:
        x0, y0, x1, y1 = landmark_box(r.points)
        side = max(x1 - x0, y1 - y0)
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        rel.append((r.points[list(EYE_INDICES)] - centre) / side)
    rel = np.concatenate(rel)
    lo, hi = np.percentile(rel, 1, axis=0), np.percentile(rel, 99, axis=0)
    print(f"data: {', '.join(args.data)}: {len(recs)} faces (held-out photos left out)")
    print(f"eye points, relative to the landmark-box centre in box sides (1st-99th percentiles): "
          f"x [{lo[0]:+.2f}, {hi[0]:+.2f}]  y [{lo[1]:+.2f}, {hi[1]:+.2f}]")
    half = EYE_CONTEXT / 2
    crop_y = (EYE_CENTRE_DY - half, EYE_CENTRE_DY + half)
    margin = min(lo[0] + half, half - hi[0], lo[1] - crop_y[0], crop_y[1] - hi[1])
    inside = np.mean((np.abs(rel[:, 0]) <= half) & (rel[:, 1] >= crop_y[0]) & (rel[:, 1] <= crop_y[1]))
    print(f"eye crop (EYE_CONTEXT {EYE_CONTEXT}, EYE_CENTRE_DY {EYE_CENTRE_DY}): x [{-half:+.2f}, {half:+.2f}] "
          f"y [{crop_y[0]:+.2f}, {crop_y[1]:+.2f}]; holds {100 * inside:.2f}% of the eye points; "
          f"smallest margin to the percentiles {margin:.2f} box sides")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
