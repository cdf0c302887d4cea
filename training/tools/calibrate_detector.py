r"""Measure how a face detector's boxes relate to the tight landmark box that
training crops from, on real annotated faces, and print the calibration
constants (centre shift and scale) for common/detector.py.

    python training/tools/calibrate_detector.py --data ../shared/data/300w-subset/labels_300w_subset_train.xml \
        --exclude-heldout 0.2

Faces held out for validation by the training split (same seed and fraction)
are excluded so that the reported scores stay untouched by the calibration.

For a model of another landmark scheme (common/schemes.py), measure on that
scheme's training data and store the result in its checkpoint, which
predict.py then uses with that detector (the faces its run held out are
left out):

    python training/tools/calibrate_detector.py --data my5.xml --write-to runs/face/3/best.pt
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from common.cli import run_script  # noqa: E402
from common.dataset import split_like_run, split_records  # noqa: E402
from common.detector import add_detector_arguments, iou, make_detector  # noqa: E402
from common.readers import read_datasets  # noqa: E402
from common.images import read_image  # noqa: E402
from common.landmarks import landmark_box  # noqa: E402
from common.progress import Progress  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="annotated datasets (any supported format)")
    add_detector_arguments(p)
    p.add_argument("--exclude-heldout", type=float, default=0.2,
                   help="leave out this validation fraction (split seed --split-seed) of each dataset")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--write-to", default=None, metavar="PT",
                   help="store the calibration in this checkpoint's scheme (a model of a scheme other than "
                        "ibug68, trained on --data; its run's held-out faces are left out instead)")
    return p


def _target(path: str, data_points: int) -> dict:
    """The checkpoint that --write-to names, checked before the slow part."""
    from common import checkpoint as C
    from common.errors import CheckpointError
    from common.schemes import scheme_of
    if not path.endswith(".pt"):
        raise CheckpointError(f"{path}: --write-to needs a .pt checkpoint (export the ONNX file again after)")
    ckpt = C.load_checkpoint(path)
    scheme = scheme_of(ckpt)
    if scheme.ibug_points is not None:
        raise CheckpointError(f"{path}: an iBUG model uses the detector's own calibration (common/detector.py)")
    if scheme.data_points != data_points:
        raise CheckpointError(f"{path}: predicts {scheme.describe()}, the data has {data_points} points per face")
    return ckpt


def main(args: argparse.Namespace) -> None:
    recs = read_datasets(args.data)
    ckpt = _target(args.write_to, len(recs[0].points)) if args.write_to and recs else None
    if ckpt is not None:
        recs, _ = split_like_run(recs, ckpt.get("config") or {})
    elif args.exclude_heldout > 0:
        recs, _ = split_records(recs, args.exclude_heldout, args.split_seed)
    det = make_detector(args.detector, args.detector_model, args.min_face)
    det.calibration = {"dx": 0.0, "dy": 0.0, "scale": 1.0}
    rows, missed = [], 0
    bar = Progress(len(recs), desc="detecting", unit="faces")
    for i, r in enumerate(recs, 1):
        lb = landmark_box(r.points)
        best = max(det.detect(read_image(r.image_path)), key=lambda d: iou(d.box, lb), default=None)
        if best is None or iou(best.box, lb) < 0.3:
            missed += 1
        else:
            b = best.box
            side = max(b[2] - b[0], b[3] - b[1])
            rows.append([((lb[0] + lb[2]) - (b[0] + b[2])) / 2 / side,
                         ((lb[1] + lb[3]) - (b[1] + b[3])) / 2 / side,
                         max(lb[2] - lb[0], lb[3] - lb[1]) / side])
        bar.update(i, i)
    bar.close()
    a = np.array(rows)
    med = np.median(a, axis=0)
    print(f"faces: {len(recs)}  matched: {len(rows)}  missed: {missed}  data: {', '.join(args.data)}")
    print(f"spread (IQR) dx {np.subtract(*np.percentile(a[:, 0], [75, 25])):.3f} "
          f"dy {np.subtract(*np.percentile(a[:, 1], [75, 25])):.3f} "
          f"scale {np.subtract(*np.percentile(a[:, 2], [75, 25])):.3f}")
    print(f'CALIBRATION = {{"dx": {med[0]:.3f}, "dy": {med[1]:.3f}, "scale": {med[2]:.3f}}}')
    if ckpt is not None:
        from common.checkpoint import atomic_save
        ckpt["scheme"].setdefault("calibration", {})[args.detector] = {
            "dx": round(float(med[0]), 4), "dy": round(float(med[1]), 4), "scale": round(float(med[2]), 4)}
        atomic_save(ckpt, args.write_to)
        print(f"stored in {args.write_to} (scheme '{ckpt['scheme']['name']}', detector {args.detector})")


if __name__ == "__main__":
    run_script(main, get_args_parser())
