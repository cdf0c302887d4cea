r"""Compare two models on the same faces, from ``evaluate.py --per-face`` files.

    python inference/evaluate.py --weights runs/twins/face.int8.onnx --data $XML --split heldout \
        --boxes detector --refine --per-face runs/eval/old.csv
    python inference/evaluate.py --weights new/face.int8.onnx --data $XML --split heldout \
        --boxes detector --refine --per-face runs/eval/new.csv
    python training/tools/compare_evals.py runs/eval/old.csv runs/eval/new.csv

Prints both mean NMEs to four decimals over the faces both files scored (a
face missed by either detector is left out, and counted), the change from
the first to the second with a 95% paired bootstrap interval
(common.metrics.paired_difference), and how many faces got better or worse.
A negative change: the second model errs less. Where both files carry the
predicted points, it also prints how far the two models' points lie apart
(common.metrics.point_drift, % of the NME normaliser): the error an int8 twin
adds to its float model, measured with no annotation needed.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("first", help="per-face CSV of the reference model (evaluate.py --per-face)")
    p.add_argument("second", help="per-face CSV of the model compared with it")
    p.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples (default 10000)")
    return p


def read_per_face_points(path: str) -> dict:
    """``{(photo, face): (NME in percent, normaliser in px, (K, 2) points)}``
    from a ``--per-face`` file; NME and points are None for a missed face,
    the normaliser and points None in a file written before they were."""
    import numpy as np
    from common.errors import InputError
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    if not rows or not {"photo", "face", "detected", "nme_percent"} <= set(rows[0]):
        raise InputError(f"{path}: not an evaluate.py --per-face file (photo,face,detected,nme_percent)")
    try:
        out = {}
        for r in rows:
            hit, pts = r["detected"] == "1", r.get("points") or ""
            out[(r["photo"], int(r["face"]))] = (
                float(r["nme_percent"]) if hit else None,
                float(r["norm_px"]) if r.get("norm_px") else None,
                np.array(pts.split(), np.float64).reshape(-1, 2) if hit and pts else None)
        return out
    except ValueError:
        raise InputError(f"{path}: a row has a face index or NME that is not a number") from None


def points_apart(rows_a: list, rows_b: list) -> dict | None:
    """:func:`common.metrics.point_drift` of two files' rows for the same
    faces, or None when a row lacks points or they differ in number."""
    import numpy as np
    from common.metrics import point_drift
    rows = list(zip(rows_a, rows_b))
    if not rows or any(ra[2] is None or rb[2] is None or ra[1] is None or ra[2].shape != rb[2].shape
                       for ra, rb in rows):
        return None
    return point_drift(np.stack([ra[2] for ra, _ in rows]), np.stack([rb[2] for _, rb in rows]),
                       np.array([ra[1] for ra, _ in rows]))


def main(args: argparse.Namespace) -> int:
    from common.errors import InputError
    from common.metrics import paired_difference
    if args.resamples < 1:
        raise InputError(f"--resamples must be 1 or more, got {args.resamples}")
    full_a, full_b = read_per_face_points(args.first), read_per_face_points(args.second)
    a, b = ({k: v[0] for k, v in full.items()} for full in (full_a, full_b))
    if set(a) != set(b):
        raise InputError(f"{args.first} and {args.second} score different faces ({len(a)} and {len(b)}; "
                         f"{len(set(a) ^ set(b))} in one only): evaluate both on the same data and split")
    both = [k for k in a if a[k] is not None and b[k] is not None]
    if not both:
        raise InputError("no face was scored in both files")
    r = paired_difference([a[k] for k in both], [b[k] for k in both], args.resamples)
    missed = len(a) - len(both)
    print(f"faces: {len(both)} scored by both{f' ({missed} missed by either detector, left out)' if missed else ''}")
    print(f"NME {r['mean_a']:.4f}% ({args.first}) -> {r['mean_b']:.4f}% ({args.second})")
    print(f"change {r['diff']:+.4f} points, 95% paired bootstrap interval [{r['low']:+.4f}, {r['high']:+.4f}]; "
          f"better on {r['better']} faces, worse on {r['worse']}")
    drift = points_apart([full_a[k] for k in both], [full_b[k] for k in both])
    if drift:
        print(f"points apart (% of the normaliser, per face): mean {drift['mean']:.4f}, median "
              f"{drift['median']:.4f}, 95th percentile {drift['p95']:.4f}, largest {drift['max']:.4f}; "
              f"largest single point {drift['point_max']:.2f}")
    print(f"DIFF={r['diff']:+.4f} LOW={r['low']:+.4f} HIGH={r['high']:+.4f} n={r['n']}")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
