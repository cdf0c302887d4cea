r"""Label the YouTube-Faces TRAINING frames in the 300-W style with a teacher model.

    python training/tools/pseudo_label.py --out runs/pseudo/ytf_train_300w.csv
    python training/tools/pseudo_label.py --weights weights/face192.pt runs/other/best.pt --flip-test \
        --max-disagreement 3.0 --out runs/pseudo/ytf_train_300w.csv --force

YouTube-Faces frames carry their own annotation style (a different jaw and
brow convention from 300-W's). A teacher trained last on 300-W (default
weights/face192.pt, the most accurate shipped model) predicts every frame of
``--data``; a student can then train on 300-W plus these frames without
learning two styles. Each frame is cropped as the teacher was trained and is
run by predict.py: from the landmark box of the frame's own annotation, then
the refine pass (the landmark box of the teacher's first prediction). With
several ``--weights`` their predictions are averaged (each refines its own
box); ``--flip-test`` averages each with its mirrored crop.

Writes a keypoints CSV (header, then the image's absolute path and
x0,y0,...,x67,y67 per row, 0-based pixels) that ``common.datasets`` reads
like the original (an absolute first column ignores the CSV's image folder),
and ``OUT.json`` beside it: the teacher files and their sha256, settings,
date, the mirror offset the labels carry (pass it to training as this data
set's ``--mirror-offset``) and each frame's disagreement between the
teacher's plain and mirrored prediction (mean point distance, % of the 36-45
distance; averaged over teachers). ``--max-disagreement PCT`` drops frames
above it. The test split (``test_frames_keypoints.csv``) is refused: those
frames stay a test set.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from common.errors import InputError  # noqa: E402
from common.model_options import add_device_argument, add_weights_argument  # noqa: E402

DEFAULT_DATA = "../shared/data/youtube-faces-keypoints/training_frames_keypoints.csv"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="frames to label (a keypoints CSV or any readable set)")
    p.add_argument("--out", required=True, help="keypoints CSV to write (OUT.json beside it)")
    add_weights_argument(p, "teacher face checkpoint(s) (.pt or .onnx); several are averaged", file="face192.pt",
                         nargs="+")
    p.add_argument("--flip-test", action="store_true",
                   help="average each teacher's prediction with its mirrored crop (keeping its annotation offset)")
    p.add_argument("--max-disagreement", type=float, default=None, metavar="PCT",
                   help="drop frames whose plain/mirrored disagreement exceeds PCT (%% of the 36-45 distance)")
    p.add_argument("--force", action="store_true", help="replace an existing OUT and OUT.json")
    p.add_argument("--max-frames", type=int, default=0,
                   help="label at most this many frames, evenly spread over --data (0: all); neighbouring "
                        "frames of a clip are near-duplicates, so a spread subset keeps most of the variety")
    p.add_argument("--batch-size", type=int, default=32, help="frames per network batch")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (0: torch's default; 1 is fastest on a busy machine)")
    add_device_argument(p)
    return p


def is_test_split(path: str) -> bool:
    """True for a YouTube-Faces test file (``test_frames_keypoints.csv``) or
    anything under a ``test/`` image folder: never pseudo-labelled."""
    base = os.path.basename(os.path.normpath(path)).lower()
    return base.startswith("test_") or base == "test"


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def label_batch(models, grays: list[np.ndarray], boxes: list[np.ndarray],
                flip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The teachers' labels for a batch of faces, one per ``(gray, box)`` pair.

    ``grays``: ``(H, W)`` uint8 images; ``boxes``: landmark-convention boxes
    ``(x0, y0, x1, y1)``. Each teacher crops the face from ``box``, then
    from the landmark box of that first prediction (predict.py's refine
    pass), and predicts on that crop plain and mirrored, exactly as
    ``LandmarkModel.predict_boxes`` does, but batched across images.
    Returns float32 ``(B, 68, 2)`` labels in image pixels (mean over
    teachers; with ``flip`` each teacher's plain and mirrored average), the
    mean over teachers of the plain/mirrored disagreement ``(B,)`` (mean
    point distance, image pixels) and of the label's mirror offset ``(B,)``
    (the teacher's own offset scaled to image pixels)."""
    from common import transforms as T
    from common.landmarks import landmark_box

    labels, disagree, offsets = [], [], []
    for m in models:
        first, _ = m.predict_crops(list(zip(grays, boxes)), flip=False)
        items = [(g, landmark_box(p)) for g, p in zip(grays, first)]
        plain, _ = m.predict_crops(items, flip=False)
        both, _ = m.predict_crops(items, flip=True)      # (plain + un-mirrored mirror) / 2
        mirrored = 2 * both - plain
        labels.append(both if flip else plain)
        disagree.append(np.linalg.norm(plain - mirrored, axis=2).mean(1))
        sides = [T.crop_region(m.scheme.crop, np.asarray(b, np.float32)).side for _, b in items]
        offsets.append(np.array([m.flip_offset * side / m.input_size for side in sides]))
    return np.mean(labels, 0).astype(np.float32), np.mean(disagree, 0), np.mean(offsets, 0)


def main(args: argparse.Namespace) -> int:
    from common.cli import output_problem
    from common.readers import read_dataset
    from common.device import select_device
    from common.images import read_image
    from common.landmarks import landmark_box
    from common.landmark_model import LandmarkModel
    from common.progress import Progress

    if is_test_split(args.data):
        raise InputError(f"{args.data} is a test split: its frames stay a test set and are never labelled")
    sidecar = args.out + ".json"
    for out in (args.out, sidecar):
        problem = output_problem(out, args.data, args.force)
        if problem:
            raise InputError(problem)
    if not args.out.lower().endswith(".csv"):
        raise InputError(f"{args.out}: the output must be a .csv file")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    models = [LandmarkModel(w, "face", device) for w in args.weights]
    records = read_dataset(args.data)
    if not records:
        raise InputError(f"{args.data}: no faces")
    if args.max_frames and len(records) > args.max_frames:
        keep_idx = np.unique(np.linspace(0, len(records) - 1, args.max_frames).round().astype(int))
        records = [records[i] for i in keep_idx]

    rows, frames = [], []
    bar = Progress(len(records), desc="pseudo-labelling", unit="faces")
    kept = 0
    for start in range(0, len(records), args.batch_size):
        chunk = records[start:start + args.batch_size]
        grays = [read_image(r.image_path, gray=True) for r in chunk]
        labels, dis_px, offs = label_batch(models, grays, [landmark_box(r.points) for r in chunk], args.flip_test)
        for r, pts, d, off in zip(chunk, labels, dis_px, offs):
            iod = float(np.linalg.norm(pts[36] - pts[45]))
            dis = 100.0 * float(d) / max(iod, 1e-6)
            keep = args.max_disagreement is None or dis <= args.max_disagreement
            frames.append({"image": os.path.abspath(r.image_path), "disagreement_pct": round(dis, 3),
                           "kept": keep})
            if keep:
                rows.append((os.path.abspath(r.image_path), pts, float(off)))
                kept += 1
        bar.update(start + len(chunk), start + len(chunk), kept=kept)
    bar.close()
    if not rows:
        raise InputError("every frame was dropped (raise --max-disagreement)")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        f.write("," + ",".join(str(k) for k in range(136)) + "\n")
        for path, pts, _ in rows:
            if "," in path or '"' in path:
                raise ValueError(f"{path}: image paths with commas or quotes cannot be written")
            f.write(path + "," + ",".join(f"{v:.3f}" for v in pts.reshape(-1)) + "\n")
    dis_all = np.array([fr["disagreement_pct"] for fr in frames])
    doc = {
        "what": "300-W-style pseudo-labels from a teacher (training/tools/pseudo_label.py)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": os.path.abspath(args.data),
        "output": os.path.abspath(args.out),
        "teachers": [{"path": os.path.abspath(w), "sha256": sha256(w), "input_size": m.input_size,
                      "flip_offset_input_px": m.flip_offset} for w, m in zip(args.weights, models)],
        "settings": {"flip_test": args.flip_test, "max_disagreement_pct": args.max_disagreement,
                     "max_frames": args.max_frames,
                     "crop": "landmark box of the frame's own annotation, then the refine pass",
                     "disagreement": "mean distance between the plain and the un-mirrored mirrored "
                                     "prediction, % of the 36-45 distance of the label, mean over teachers"},
        "frames_total": len(records),
        "frames_kept": len(rows),
        "disagreement_pct": {"mean": round(float(dis_all.mean()), 3),
                             "median": round(float(np.median(dis_all)), 3),
                             "p95": round(float(np.percentile(dis_all, 95)), 3),
                             "max": round(float(dis_all.max()), 3)},
        # The labels keep the teacher's own offset from mirror symmetry; in photo pixels this is
        # the value to give training as this data set's --mirror-offset.
        "mirror_offset_photo_px": round(float(np.mean([o for *_, o in rows])), 4),
        "frames": frames,
    }
    with open(sidecar + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, args.out)
    os.replace(sidecar + ".tmp", sidecar)
    print(f"labelled {len(records)} frames, kept {len(rows)}; disagreement mean "
          f"{doc['disagreement_pct']['mean']:.2f}% median {doc['disagreement_pct']['median']:.2f}% "
          f"p95 {doc['disagreement_pct']['p95']:.2f}%; label mirror offset "
          f"{doc['mirror_offset_photo_px']:.3f} photo px")
    print(f"wrote {args.out} and {sidecar}")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
