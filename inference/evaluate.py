r"""Measure a landmark model on an annotated dataset.

    python inference/evaluate.py --weights weights/face.pt \
        --data ../shared/data/300w-subset/labels_300w_subset_train.xml --split heldout --boxes detector

Prints the number of faces, NME (normalised by the distance between points 36
and 45, or by the model's scheme's rule: common/schemes.py), median, failure rates at 8% and 10%, AUC at 8%, writes a CED plot,
and ends with one machine-readable line, e.g.
``NME=3.41 median=3.02 FR8=1.2 FR10=0.6 AUC8=57.3 n=330 detected=326``.

``--boxes landmarks`` crops from the ground truth's tight landmark box with
the evaluation crop; ``--boxes detector`` runs predict.py's detector, matches
each ground-truth face to a detection, and also reports the detection rate
(a second line counts missed faces as failures). ``--split heldout`` keeps
only the photos that the checkpoint's training run held out for validation.
``--degrade`` measures the same faces on dimmed, flattened, blurred,
JPEG-damaged or tightly cut photos (common/degrade.py), detector included.
``--worst N`` lists the N faces with the largest error and draws them, the
annotation in green and the prediction in red, beside the CED plot.
Works for the eye model (its 12 points, same normalisation), for a model of
any scheme on data of that scheme and, with ``--points eyes``, scores an
iBUG face model on points 36-47 only.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from common.detector import add_detector_arguments  # noqa: E402
from common.model_options import (TorchLevers, add_device_argument, add_lever_arguments,  # noqa: E402
                                  add_weights_argument)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_argument(p, "checkpoint to evaluate (face or eyes), or its .onnx export (needs onnxruntime)")
    p.add_argument("--data", required=True, help="dlib XML, folder of .pts files, keypoints CSV or WFLW .txt")
    p.add_argument("--image-root", default=None, metavar="DIR",
                   help="WFLW .txt data: the folder its image paths are relative to")
    p.add_argument("--boxes", choices=("landmarks", "detector"), default="landmarks")
    p.add_argument("--split", choices=("all", "heldout", "train"), default="all",
                   help="heldout/train: the part of --data that the checkpoint's run held out / trained on")
    p.add_argument("--points", choices=("all", "eyes"), default="all",
                   help="eyes: score only points 36-47 (to compare a face model with the eye model)")
    p.add_argument("--refine", action="store_true",
                   help="second pass: re-crop from the first prediction's landmark box")
    p.add_argument("--flip-test", action="store_true",
                   help="average the final prediction with the one on the mirrored crop, keeping the annotation "
                        "offset the checkpoint records (with --refine the first pass is not mirrored)")
    p.add_argument("--multi-crop", action="store_true",
                   help="average the final prediction over seven crops of each box (as given, 0.9x and 1.1x, "
                        "shifted 3%% each way: common/landmark_model.py's MULTI_CROP; 7x that pass's time)")
    add_weights_argument(p, "for an eye model with --refine: the face model whose prediction gives the box",
                         "--face-weights")
    p.add_argument("--int8-reference", action="store_true",
                   help="an .onnx model: run it with ONNX Runtime's graph optimisations off, so its int8 layers "
                        "compute in float32 on the quantised values (exact int8 arithmetic, slower); the "
                        "difference from a plain run is what this CPU's int8 kernels cost")
    p.add_argument("--degrade", choices=("none", "low-contrast", "dark", "blur", "jpeg", "tight"), default="none",
                   help="degrade every photo first (common/degrade.py): half the contrast, 0.35x the light, "
                        "Gaussian blur of sigma 2 px, JPEG at quality 15, or black beyond the annotated faces' "
                        "landmark boxes plus 10%% (a photo cut tight around the face)")
    add_detector_arguments(p)
    add_device_argument(p)
    add_lever_arguments(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--skip-bad", action="store_true",
                   help="skip malformed records (reported) instead of stopping at the first")
    p.add_argument("--ced", default=None,
                   help="CED plot path (default: runs/eval/<weights>_<data>_<split>_<boxes>[_...].png, "
                        "with _2, _3, ... added rather than replacing an earlier plot)")
    p.add_argument("--worst", type=int, default=0, metavar="N",
                   help="list the N faces with the largest error and draw them (annotation green, prediction "
                        "red) to the CED plot's path with _worst added")
    p.add_argument("--per-face", default=None, metavar="CSV",
                   help="write every face's NME and predicted points to CSV (photo, face in photo, detected, "
                        "nme_percent, norm_px, points), for a paired comparison of two models with "
                        "training/tools/compare_evals.py")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --ced file (and its _worst sheet) or --per-face file")
    return p


def worst_path(ced: str) -> str:
    """Where ``--worst`` draws its faces: the CED plot's path with ``_worst`` added."""
    stem, ext = os.path.splitext(ced)
    return f"{stem}_worst{ext or '.png'}"


def free_path(path: str, worst: bool = False) -> str:
    """``path``, or ``<stem>_2<ext>``, ``_3``, ... when taken (with ``worst``: when
    its ``_worst`` sheet is taken, too): never an earlier file."""
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.exists(path) or (worst and os.path.exists(worst_path(path))):
        n += 1
        path = f"{stem}_{n}{ext}"
    return path


def write_per_face(path: str, where: list, found: np.ndarray, nmes: np.ndarray, norms: np.ndarray,
                   preds: np.ndarray) -> None:
    """``--per-face``: one row per face in evaluation order: its NME, its NME
    normaliser in pixels and the predicted points (``x0 y0 x1 y1 ...``, image
    pixels); a missed face's NME and points are empty. Written to a temporary
    file first, so an interrupted run leaves no half file."""
    import csv
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.part"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["photo", "face", "detected", "nme_percent", "norm_px", "points"])
        for (photo, k), hit, e, n, p in zip(where, found, nmes, norms, preds):
            w.writerow([photo, k, int(hit), f"{100 * e:.4f}" if hit else "", f"{n:.3f}",
                        " ".join(f"{v:.3f}" for v in p.reshape(-1)) if hit else ""])
    os.replace(tmp, path)


def photo_as_scored(path: str, recs: list, degrade: str) -> np.ndarray:
    """The RGB photo as the model and detector see it: read, then ``--degrade``d."""
    from common.degrade import DEGRADATIONS, tight
    from common.images import read_image
    from common.landmarks import landmark_box
    rgb = read_image(path)
    if degrade == "tight":
        return tight(rgb, [landmark_box(r.points) for r in recs])
    return rgb if degrade == "none" else DEGRADATIONS[degrade](rgb)


def main(args: argparse.Namespace) -> int:
    from common.checkpoint import provenance
    from common.dataset import records_of_split
    from common.readers import dataset_name, read_datasets
    from common.detector import iou, make_detector
    from common.errors import InputError
    from common.schemes import detector_calibration
    from common.device import select_device
    from common.metrics import (ced_plot, faces_sheet, nme_per_face, normaliser, rank_correlation, summarize,
                                summary_line)
    from common.images import rgb_to_gray
    from common.landmarks import EYE_INDICES, landmark_box, normalisation_pair
    from common.landmark_model import LandmarkModel, refined_boxes
    from common.model_options import pick_weights
    from common.progress import Progress

    if args.worst < 0:
        raise InputError(f"--worst must be 0 or more faces, got {args.worst}")
    device = select_device(args.device)
    levers = TorchLevers.from_args(args)
    args.weights = pick_weights(args.weights, "face", device, pt_only=bool(levers.names))
    if args.int8_reference and not args.weights.lower().endswith(".onnx"):
        raise InputError(f"--int8-reference needs an .onnx model, not {args.weights}")
    model = LandmarkModel(args.weights, None, device, int8_reference=args.int8_reference, levers=levers)
    ckpt = model.description
    model.flip_test, model.multi_crop = args.flip_test, args.multi_crop
    face_model = None
    if args.refine:
        face_model = model if ckpt["task"] == "face" else LandmarkModel(
            pick_weights(args.face_weights, "face", device, "--face-weights", bool(levers.names)), "face", device,
            int8_reference=args.int8_reference, levers=levers)
    outputs = [args.ced, worst_path(args.ced)] if args.ced and args.worst else [args.ced]
    for path in outputs + [args.per_face]:
        if path and os.path.exists(path) and not args.force:
            raise InputError(f"{path} exists (use --force to replace it, or another --ced)")
    records = read_datasets([args.data], skip_bad=args.skip_bad, image_root=args.image_root)
    scheme = model.scheme
    if records and any(len(r.points) != scheme.data_points for r in records):
        raise InputError(f"{args.data}: its faces have {len(records[0].points)} points, but {args.weights} "
                         f"predicts {scheme.describe()} (from {scheme.data_points}-point faces)")
    name = dataset_name(args.data)
    records = records_of_split(records, ckpt.get("config", {}), name, args.split, args.weights)
    if args.points == "eyes":
        if scheme.ibug_points is None:
            raise InputError(f"--points eyes needs a model of iBUG points; {args.weights} predicts {scheme.describe()}")
        indices = list(EYE_INDICES)
        pos, pair = model.positions(indices), normalisation_pair(indices)
    else:
        indices, pos, pair = model.indices, list(range(len(model.indices))), scheme.norm
    detector = make_detector(args.detector, args.detector_model, args.min_face) if args.boxes == "detector" else None
    if detector is not None and scheme.ibug_points is None:
        detector.calibration, source = detector_calibration(scheme, args.detector, type(detector).calibration)
        print(f"detector boxes: {source}", file=sys.stderr)

    by_image: "OrderedDict[str, list]" = OrderedDict()
    for r in records:
        by_image.setdefault(r.image_path, []).append(r)
    preds, gts, found, confidences, where = [], [], [], [], []
    bar = Progress(len(records), desc=f"evaluating {name}", unit="faces")
    t0, done = time.time(), 0
    for path, recs in by_image.items():
        rgb = photo_as_scored(path, recs, args.degrade)
        gray = rgb_to_gray(rgb)
        boxes, ok = [], []
        dets = detector.detect(rgb) if detector else None
        for r in recs:
            lb = landmark_box(r.points)
            if dets is None:
                boxes.append(lb)
                ok.append(True)
                continue
            best = max(dets, key=lambda d: iou(d.face_box, lb), default=None)
            hit = best is not None and iou(best.face_box, lb) >= 0.3
            boxes.append(best.face_box if hit else lb)
            ok.append(hit)
        if face_model is not None:
            boxes = refined_boxes(face_model, gray, boxes)
        out, scores = model.predict_boxes_with_scores(gray, boxes)
        out = out[:, pos]
        if scores is not None:
            confidences.extend(scores[:, pos])
        for k, (r, p, hit) in enumerate(zip(recs, out, ok)):
            where.append((path, k))
            preds.append(p)
            gts.append(r.points[indices])
            found.append(hit)
        done += len(recs)
        bar.update(done, done)
    bar.close()
    preds, gts, found = np.stack(preds), np.stack(gts), np.array(found)
    nmes = nme_per_face(preds, gts, pair)
    s = summarize(nmes[found])
    what = (f"{ckpt['task']} model ({ckpt['head']} head, {ckpt['input_size']}px, {provenance(ckpt)}"
            f"{', int8' if 'quantization' in ckpt else ''}{', int8 reference arithmetic' if args.int8_reference else ''})")
    print(f"weights: {args.weights}: {what}")
    print(f"data: {args.data} [{args.split}]{'' if args.degrade == 'none' else ', degraded: ' + args.degrade}, "
          f"boxes: {args.boxes}{' + refine' if args.refine else ''}{' + flip-test' if args.flip_test else ''}"
          f"{' + multi-crop' if args.multi_crop else ''}, points: {args.points} ({len(indices)}), faces: {len(records)}, "
          f"{(time.time() - t0) / max(len(records), 1) * 1000:.0f} ms/face")
    extra = {}
    if detector is not None:
        extra["detected"] = int(found.sum())
        print(f"detection rate: {100 * found.mean():.1f}% ({found.sum()}/{len(found)})")
        s_all = summarize(np.where(found, nmes, np.inf))
        print(f"with missed faces as failures: FR8={s_all['fr8']:.1f} FR10={s_all['fr10']:.1f} "
              f"AUC8={s_all['auc8']:.1f} n={s_all['n']}")
    ced = args.ced or free_path(os.path.join(
        "runs", "eval", f"{os.path.splitext(os.path.basename(args.weights))[0]}_"
        f"{os.path.splitext(name)[0]}_{args.split}_{args.boxes}"
        f"{'_' + args.detector if args.boxes == 'detector' else ''}"
        f"{'_eyes' if args.points == 'eyes' else ''}{'_refine' if args.refine else ''}"
        f"{'_flip' if args.flip_test else ''}{'_multi' if args.multi_crop else ''}{'' if args.degrade == 'none' else '_' + args.degrade}.png"),
        worst=args.worst > 0)
    os.makedirs(os.path.dirname(os.path.abspath(ced)), exist_ok=True)
    ced_plot({f"{ckpt['task']} model, {args.boxes} boxes": nmes[found]}, ced,
             title=f"{name} [{args.split}], n={int(found.sum())}")
    print(f"CED plot: {ced}")
    if args.per_face:
        write_per_face(args.per_face, where, found, nmes, normaliser(gts, pair), preds)
        print(f"per-face NMEs: {args.per_face}")
    if args.worst:
        worst = [i for i in np.argsort(-nmes, kind="stable") if found[i]][:args.worst]
        tiles = []
        print(f"worst {len(worst)} faces (NME, photo, face in photo):")
        for i in worst:
            path, k = where[i]
            print(f"  {100 * nmes[i]:6.2f}  {path}  {k}")
            tiles.append((photo_as_scored(path, by_image[path], args.degrade), gts[i], preds[i],
                          f"{100 * nmes[i]:.2f}%  {os.path.basename(path)} #{k}"))
        faces_sheet(tiles, worst_path(ced), title=f"{name} [{args.split}]: worst {len(worst)} faces "
                                                  "(annotation green, prediction red)")
        print(f"worst faces: {worst_path(ced)}")
    print(f"NME {s['nme']:.2f}%  median {s['median']:.2f}%  FR8 {s['fr8']:.1f}%  FR10 {s['fr10']:.1f}%  "
          f"AUC8 {s['auc8']:.1f}")
    if len(confidences) == len(preds):
        # How well the point scores predict error (negative: confident points err less).
        conf = np.stack(confidences)[found]
        point_err = np.linalg.norm(preds - gts, axis=2)[found] / normaliser(gts[found], pair)[:, None]
        print(f"confidence: rank correlation with error, per face (quality vs NME) "
              f"{rank_correlation(conf.mean(axis=1), nmes[found]):+.2f}, per point (score vs error) "
              f"{rank_correlation(conf, point_err):+.2f}")
    print(summary_line(s, **extra))
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
