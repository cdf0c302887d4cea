r"""Compare face detectors and their settings (smallest face; for Haar, the
cascade, scale factor and neighbours) for detection rate and speed on real
annotated photos.

    python training/tools/tune_detector.py --data ../shared/data/300w-subset/labels_300w_subset_train.xml \
        --detector blazeface mtcnn haar --min-face 40 80 --scale-factor 1.1 1.2 --min-neighbors 3 5

For every combination it prints: the share of annotated faces found (a
detection whose calibrated box overlaps the face's landmark box by IoU 0.3 or
more), the detections matching no annotated face per photo (an upper bound
on false alarms: some photos show faces nobody annotated), and the median
detection time per photo, on these photos and on the bundled portrait.
Faces that training runs hold out for validation are left out
(``--exclude-heldout``, same split as training), so that choosing settings
here leaves the reported scores untouched. Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def get_args_parser() -> argparse.ArgumentParser:
    from common.detector import DEFAULT_DETECTOR, HAAR_CASCADE, HAAR_MIN_NEIGHBORS, HAAR_SCALE_FACTOR, MIN_FACE
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="annotated datasets (any supported format)")
    p.add_argument("--detector", nargs="+", default=[DEFAULT_DETECTOR], choices=("blazeface", "mtcnn", "haar"),
                   help="detectors to compare (the Haar settings below apply to haar only)")
    p.add_argument("--min-face", type=float, nargs="+", default=[MIN_FACE], metavar="PX")
    p.add_argument("--window", type=float, nargs="+", default=[None], metavar="PX",
                   help="blazeface and mtcnn: detect on a copy where a --min-face face is this many pixels "
                        "(default: the backend's own window; smaller is faster)")
    p.add_argument("--threshold", type=float, nargs="+", default=[None], metavar="P",
                   help="blazeface: face probability kept (default: common/blazeface.py's THRESHOLD)")
    p.add_argument("--scale-factor", type=float, nargs="+", default=[HAAR_SCALE_FACTOR], metavar="F")
    p.add_argument("--min-neighbors", type=int, nargs="+", default=[HAAR_MIN_NEIGHBORS], metavar="N")
    p.add_argument("--cascade", nargs="+", default=[HAAR_CASCADE], metavar="XML",
                   help="Haar cascade files (names in cv2.data.haarcascades, or paths)")
    p.add_argument("--exclude-heldout", type=float, default=0.2,
                   help="leave out this validation fraction (split seed --split-seed)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--max-photos", type=int, default=0, help="use only the first N photos (0: all)")
    return p


def _window(w: float | None) -> str:
    return "" if w is None else f" window {w:g}"


def _windowed(det, window: float | None):
    if window is not None:
        det.window = window
    return det


def main(args: argparse.Namespace) -> int:
    import numpy as np
    from matplotlib import cbook
    from common.dataset import split_records
    from common.readers import read_datasets
    from common.detector import BlazeFaceDetector, HaarDetector, MtcnnDetector, iou
    from common.images import read_image
    from common.landmarks import landmark_box
    from common.progress import Progress

    recs = read_datasets(args.data)
    if args.exclude_heldout > 0:
        recs, _ = split_records(recs, args.exclude_heldout, args.split_seed)
    by_photo: dict[str, list] = {}
    for r in recs:
        by_photo.setdefault(r.image_path, []).append(landmark_box(r.points))
    photos = list(by_photo.items())[:args.max_photos or None]
    bar = Progress(len(photos), desc="reading photos", unit="photos")
    images = []
    for i, (path, boxes) in enumerate(photos, 1):
        images.append((read_image(path), boxes))
        bar.update(i, i)
    bar.close()
    portrait = read_image(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    n_faces = sum(len(b) for _, b in images)
    print(f"data: {', '.join(args.data)} (held-out fraction {args.exclude_heldout} left out): "
          f"{len(images)} photos, {n_faces} faces")
    print(f"{'detector':>36} {'min_face':>8} {'scale':>6} {'neigh':>5} {'found %':>8} {'unmatched/photo':>15} "
          f"{'ms/photo':>9} {'ms portrait':>11}")
    settings = []  # (label, min_face, scale factor or None, neighbours or None, detector)
    for name in args.detector:
        if name == "mtcnn":
            settings += [(f"mtcnn{_window(w)}", m, None, None, _windowed(MtcnnDetector(min_face=m), w))
                         for m, w in itertools.product(args.min_face, args.window)]
        elif name == "blazeface":
            settings += [(f"blazeface{_window(w)}{'' if t is None else f' p>{t:g}'}", m, None, None,
                          _windowed(BlazeFaceDetector(min_face=m, threshold=t), w))
                         for m, w, t in itertools.product(args.min_face, args.window, args.threshold)]
        else:
            settings += [(os.path.basename(c), m, f, n, HaarDetector(c, scale_factor=f, min_neighbors=n, min_face=m))
                         for c, m, f, n in itertools.product(args.cascade, args.min_face, args.scale_factor,
                                                             args.min_neighbors)]
    for label, min_face, factor, neigh, det in settings:
        found = unmatched = 0
        times = []
        for rgb, boxes in images:
            t = time.perf_counter()
            dets = det.detect(rgb)
            times.append(time.perf_counter() - t)
            used = set()
            for lb in boxes:
                scores = [iou(d.face_box, lb) for d in dets]
                j = int(np.argmax(scores)) if scores else -1
                if j >= 0 and scores[j] >= 0.3:
                    found += 1
                    used.add(j)
            unmatched += len(dets) - len(used)
        portrait_ms = []
        for _ in range(7):
            t = time.perf_counter()
            det.detect(portrait)
            portrait_ms.append(time.perf_counter() - t)
        factor, neigh = ("-", "-") if factor is None else (f"{factor:.2f}", str(neigh))
        print(f"{label:>36} {min_face:>8.0f} {factor:>6} {neigh:>5} {100 * found / max(n_faces, 1):>8.1f} "
              f"{unmatched / max(len(images), 1):>15.2f} {1000 * statistics.median(times):>9.1f} "
              f"{1000 * statistics.median(portrait_ms):>11.1f}")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
