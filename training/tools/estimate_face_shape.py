r"""Estimate the 3-D mean face of the 68 iBUG points from 2-D annotations.

    python training/tools/estimate_face_shape.py common/face_shape_68.csv \
        --data ../shared/data/300w-subset/labels_300w_subset_train.xml \
               ../shared/data/youtube-faces-keypoints/training_frames_keypoints.csv \
        --split-from runs/twins/face.pt --force   # weights/face.pt's twin: bash training/twin.sh face

Rigid structure from motion by orthographic factorisation (Tomasi and Kanade
1992, with the metric upgrade for scaled orthography): many annotated faces,
seen at different yaws and pitches, are treated as views of one rigid shape.
Each face's points are centred and scaled to unit RMS radius, stacked into a
``2F x 68`` matrix, whose best rank-3 factorisation ``M S`` is upgraded to
a Euclidean one by the ``Q`` that makes every face's two rows of ``M Q``
orthogonal and of equal length. The shape ``Q^-1 S`` is known up to a
rotation and a mirror image; it is then put in the frame of
``common/pose.py`` (x from the subject's right to left side, y from the eyes
down to the mouth, z away from the camera), the mirror image chosen that
puts the nose tip in front (towards the camera), averaged with its own
left-right mirror image (``common.landmarks.FLIP_PERMUTATION_68``) so that it
is exactly symmetric, moved so that the nose tip (point 30) is the origin,
and scaled so that the outer eye corners (36, 45) are 1 apart. Last, pitch 0
is set to the median pitch of the training faces (each face's rotation
fitted by scaled orthographic Procrustes): the shape is turned about its x
axis by that median, so that "pitch 0" means a face seen the way these
photos typically see faces, not an arbitrary plane of the face.

Only faces a model was trained on are used: ``--split-from`` names a
checkpoint, and the part of ``--data`` that its training run held out for
validation (``common.dataset.split_like_run``, as ``inference/evaluate.py
--split train`` does) is left out, so the held-out faces stay untouched.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from common.errors import InputError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", help="CSV to write (68 rows index,x,y,z after # comment lines)")
    p.add_argument("--data", nargs="+", required=True,
                   help="annotated data sets (dlib XML, .pts folder or keypoints CSV)")
    p.add_argument("--split-from", required=True, metavar="FILE",
                   help="use only the faces this checkpoint's training run trained on ('none': all faces); "
                        "weights/face.pt is a final fit (no faces held out): give its twin, runs/twins/face.pt "
                        "(bash training/twin.sh face)")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    return p


def _metric_row(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Coefficients of ``a^T L b`` in the 6 unknowns of a symmetric 3x3 L."""
    return np.array([a[0] * b[0], a[0] * b[1] + a[1] * b[0], a[0] * b[2] + a[2] * b[0],
                     a[1] * b[1], a[1] * b[2] + a[2] * b[1], a[2] * b[2]])


def factorise(shapes: np.ndarray) -> tuple[np.ndarray, float]:
    """Rigid shape float64 ``(P, 3)`` (up to rotation and mirror image) from
    ``(F, P, 2)`` views, and the fraction of the centred data's energy the
    rank-3 model leaves out."""
    x = shapes - shapes.mean(axis=1, keepdims=True)
    x /= np.sqrt((x ** 2).sum(axis=(1, 2), keepdims=True) / x.shape[1])
    w = np.concatenate([x[:, :, 0], x[:, :, 1]], axis=0)          # (2F, P): all x rows, then all y rows
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    residual = float((s[3:] ** 2).sum() / (s ** 2).sum())
    m = u[:, :3] * np.sqrt(s[:3])
    shape = np.sqrt(s[:3])[:, None] * vt[:3]
    f = len(x)
    rows = []
    for i in range(f):
        a, b = m[i], m[f + i]
        rows.append(_metric_row(a, a) - _metric_row(b, b))
        rows.append(_metric_row(a, b))
    # L = Q Q^T up to scale: the null vector of the constraints.
    l6 = np.linalg.svd(np.array(rows))[2][-1]
    ell = np.array([[l6[0], l6[1], l6[2]], [l6[1], l6[3], l6[4]], [l6[2], l6[4], l6[5]]])
    if np.trace(ell) < 0:
        ell = -ell
    lam, vec = np.linalg.eigh(ell)
    q = vec * np.sqrt(np.clip(lam, 1e-9 * lam.max(), None))
    return (np.linalg.inv(q) @ shape).T, residual


def canonical_frame(shape: np.ndarray) -> tuple[np.ndarray, float]:
    """The shape in the frame of ``common/pose.py``, nose tip in front,
    made left-right symmetric, nose tip at the origin, outer eye corners 1
    apart; also the RMS asymmetry removed (same units)."""
    from common.landmarks import FLIP_PERMUTATION_68
    perm = np.array(FLIP_PERMUTATION_68)
    shape = shape - shape.mean(0)
    # Mirror pairs list the subject's right point (image left) first: x runs right.
    side = shape[perm] - shape
    right = np.array([i for i in range(68) if perm[i] > i])
    ex = side[right].sum(0)
    ex /= np.linalg.norm(ex)
    down = shape[48:68].mean(0) - shape[36:48].mean(0)
    ey = down - ex * (down @ ex)
    ey /= np.linalg.norm(ey)
    ez = np.cross(ex, ey)
    s = shape @ np.stack([ex, ey, ez], axis=1)
    if s[30, 2] > s[:, 2].mean():    # the nose tip must be nearer the camera than the face
        s[:, 2] = -s[:, 2]
    mirrored = s[perm] * np.array([-1.0, 1.0, 1.0])
    asym = float(np.sqrt(((s - mirrored) ** 2).sum(1).mean()) / 2)
    s = (s + mirrored) / 2
    s -= s[30]
    scale = np.linalg.norm(s[45] - s[36])
    return s / scale, asym / scale


def view_angles(shape: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """``(F, 3)`` yaw, pitch, roll (degrees, ``common.pose`` convention) of
    each ``(F, P, 2)`` view of the ``(P, 3)`` shape under scaled orthography."""
    from common.pose import angles_from_rotation
    s = (shape - shape.mean(0)).T                                   # (3, P)
    pinv = np.linalg.pinv(s)
    out = []
    for view in shapes:
        a = (view - view.mean(0)).T @ pinv                          # (2, 3) ~ scale * rows of R
        u, _, vt = np.linalg.svd(a, full_matrices=False)
        r12 = u @ vt
        out.append(angles_from_rotation(np.vstack([r12, np.cross(r12[0], r12[1])])))
    return np.array(out)


def level_pitch(shape: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, float]:
    """The shape turned about its x axis so that the views' median pitch is
    0, and that median (degrees, before the turn)."""
    from common.pose import rotation_from_angles
    median = float(np.median(view_angles(shape, shapes)[:, 1]))
    return shape @ rotation_from_angles(0.0, median, 0.0).T, median


def main(args: argparse.Namespace) -> int:
    from common.cli import output_problem
    from common.readers import read_datasets

    problem = output_problem(args.output, args.data[0], args.force)
    if problem:
        raise InputError(problem)
    records = read_datasets(args.data)
    n_all = len(records)
    split_note = "all faces"
    if args.split_from.lower() != "none":
        from common.checkpoint import load_checkpoint
        from common.dataset import is_final_fit, split_like_run
        config = load_checkpoint(args.split_from).get("config", {})
        if is_final_fit(config):
            raise InputError(f"--split-from {args.split_from}: a final fit, it held no faces out; give its twin "
                             "(bash training/twin.sh face), or none for every face")
        records, held = split_like_run(records, config)
        split_note = f"the part {os.path.basename(args.split_from)}'s run trained on ({len(held)} held-out faces left out)"
    if len(records) < 3:
        raise InputError("fewer than 3 faces to factorise")
    shapes = np.stack([r.points for r in records]).astype(np.float64)
    raw, residual = factorise(shapes)
    shape, asym = canonical_frame(raw)
    shape, pitch0 = level_pitch(shape, shapes)
    after = np.median(view_angles(shape, shapes), axis=0)

    names = ", ".join(os.path.basename(os.path.normpath(d)) for d in args.data)
    today = datetime.date.today().isoformat()
    header = [
        "3-D mean face of the 68 iBUG points, for common/pose.py",
        f"written by training/tools/estimate_face_shape.py on {today}",
        f"data: {names}: {len(records)} of {n_all} faces, {split_note}",
        "method: orthographic factorisation (Tomasi-Kanade, metric upgrade), nose tip in front, "
        "averaged with its mirror image, pitch 0 = the faces' median pitch",
        "frame: x to the subject's left (image right), y down, z away from the camera; "
        "origin: nose tip (point 30); unit: outer eye corners (36-45) distance",
        "index,x,y,z",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.writelines(f"# {line}\n" for line in header)
        for i, (x, y, z) in enumerate(shape):
            f.write(f"{i},{x:.5f},{y:.5f},{z:.5f}\n")
    print(f"faces: {len(records)} of {n_all} ({split_note}) from {names}")
    print(f"rank-3 residual: {100 * residual:.2f}% of the centred point energy; "
          f"asymmetry removed: {asym:.4f} (RMS, eye-corner units)")
    print(f"turned by the faces' median pitch, {pitch0:.2f} degrees; medians now: yaw {after[0]:.2f}, "
          f"pitch {after[1]:.2f}, roll {after[2]:.2f}")
    print(f"nose tip depth in front of the eye corners: {shape[[36, 45], 2].mean() - shape[30, 2]:.3f}; "
          f"chin (8) below the nose tip: {shape[8, 1]:.3f}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    from common.cli import run_script
    run_script(main, get_args_parser())
