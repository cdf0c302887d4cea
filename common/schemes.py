"""Landmark schemes: what a model's K output points are. The one place that
holds scheme facts other than the iBUG 68 ones (those stay in
:mod:`common.landmarks`, which this module builds on).

A :class:`Scheme` is
- ``num_points`` K and a ``name`` ("ibug68", "eyes12", "wflw98", or a custom one);
- ``flip``: the left/right permutation used when mirroring (an involution);
- ``norm``: the NME normalisation, two point positions (iBUG 68: the outer
  eye corners 36 and 45), or None for the box size ``sqrt(w * h)`` of the
  ground truth's points box (schemes without eye corners);
- ``regions`` (name -> positions) and ``lines`` (polylines) for drawing;
- ``crop``: :class:`common.transforms.CropRule`, the square crop relative to
  the tight box of the data's points (iBUG 68: 1.25 times its longer side);
- ``calibration``: detector name -> the detector-box-to-points-box
  calibration measured for this scheme (``training/tools/calibrate_detector.py
  --write-to``); see :func:`detector_calibration` for the uncalibrated rule;
- ``ibug_points``: the iBUG index of every point when all are iBUG points
  (ibug68, eyes12), and ``ibug68``: the positions of the 68 iBUG points
  among the outputs when all 68 can be read off them (ibug68; wflw98 by the
  usual 98 -> 68 mapping). Pose and the eye model need ``ibug68``;
- ``named``: names of single points (:data:`POINT_NAMES`: the eye centres
  or corners, the nose tip, the mouth corners), for a custom scheme from its
  scheme file; ArcFace chips need either ``ibug68`` or these names
  (:meth:`Scheme.arcface_groups`).

Checkpoints store :meth:`Scheme.to_dict` (plain values); a checkpoint
without one is ibug68 (task "face") or eyes12 (task "eyes").
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import CheckpointError, DatasetFormatError, InputError
from .landmarks import (EYE_INDICES, REGIONS_68, flip_permutation, landmark_box,
                        normalisation_pair)
from .transforms import EYE_CONTEXT, EYE_CENTRE_DY, FACE_CONTEXT, CropRule


@dataclass(frozen=True)
class Scheme:
    """A landmark scheme (see the module docstring). Positions are 0-based
    indices into the scheme's own ``(K, 2)`` point arrays."""
    name: str
    num_points: int
    flip: tuple[int, ...]
    norm: tuple[int, int] | None
    regions: tuple[tuple[str, tuple[int, ...]], ...] = ()
    lines: tuple[tuple[tuple[int, ...], bool], ...] = ()
    crop: CropRule = CropRule(FACE_CONTEXT)
    ibug_points: tuple[int, ...] | None = None
    ibug68: tuple[int, ...] | None = None
    calibration: dict = field(default_factory=dict, compare=False)
    named: tuple[tuple[str, int], ...] = ()

    @property
    def data_points(self) -> int:
        """How many points each annotated face of its training data has (an
        iBUG subset such as eyes12 is cut from 68-point faces)."""
        return 68 if self.ibug_points is not None else self.num_points

    @property
    def landmark_indices(self) -> tuple[int, ...]:
        """Which of the data's points the model predicts, in output order."""
        return self.ibug_points if self.ibug_points is not None else tuple(range(self.num_points))

    def describe(self) -> str:
        """``the 5-point scheme 'custom5'``, for messages."""
        return f"the {self.num_points}-point scheme '{self.name}'"

    def arcface_groups(self) -> tuple[tuple[int, ...], ...] | None:
        """Positions whose mean gives each of the five ArcFace points: the
        subject's right eye centre, left eye centre, nose tip, right and left
        mouth corners (:data:`common.alignment.ARCFACE_112`'s order). From
        the 68 iBUG points when the scheme has them (each eye's six points,
        30, 48, 54), else from :attr:`named` (an eye's centre, or the mean of
        its two corners); None when neither gives all five."""
        if self.ibug68 is not None:
            m = self.ibug68
            return (tuple(m[i] for i in range(36, 42)), tuple(m[i] for i in range(42, 48)), (m[30],), (m[48],),
                    (m[54],))
        pos = dict(self.named)
        groups = []
        for side in ("right", "left"):
            centre, corners = f"{side}_eye_centre", (f"{side}_eye_outer", f"{side}_eye_inner")
            if centre in pos:
                groups.append((pos[centre],))
            elif all(c in pos for c in corners):
                groups.append(tuple(pos[c] for c in corners))
            else:
                return None
        if not all(n in pos for n in ("nose_tip", "mouth_right", "mouth_left")):
            return None
        return tuple(groups) + ((pos["nose_tip"],), (pos["mouth_right"],), (pos["mouth_left"],))

    def to_dict(self) -> dict:
        """Plain values for a checkpoint or an ONNX export's metadata."""
        return {"name": self.name, "num_points": self.num_points, "flip_permutation": list(self.flip),
                "normalisation": list(self.norm) if self.norm is not None else "box",
                "regions": {k: list(v) for k, v in self.regions},
                "lines": [{"points": list(p), "closed": c} for p, c in self.lines],
                "crop": {"context": self.crop.context, "centre_dy": self.crop.centre_dy},
                "ibug_points": list(self.ibug_points) if self.ibug_points is not None else None,
                "ibug68": list(self.ibug68) if self.ibug68 is not None else None,
                "calibration": {k: dict(v) for k, v in self.calibration.items()},
                "named_points": dict(self.named)}

    @classmethod
    def from_dict(cls, d: dict) -> "Scheme":
        """Inverse of :meth:`to_dict`; raises :class:`CheckpointError` when malformed."""
        try:
            norm = d.get("normalisation", "box")
            crop = d.get("crop") or {}
            scheme = cls(
                name=str(d["name"]), num_points=int(d["num_points"]),
                flip=tuple(int(i) for i in d["flip_permutation"]),
                norm=None if norm == "box" else (int(norm[0]), int(norm[1])),
                regions=tuple((str(k), tuple(int(i) for i in v)) for k, v in (d.get("regions") or {}).items()),
                lines=tuple((tuple(int(i) for i in ln["points"]), bool(ln.get("closed")))
                            for ln in d.get("lines") or []),
                crop=CropRule(float(crop.get("context", FACE_CONTEXT)), float(crop.get("centre_dy", 0.0))),
                ibug_points=tuple(d["ibug_points"]) if d.get("ibug_points") is not None else None,
                ibug68=tuple(d["ibug68"]) if d.get("ibug68") is not None else None,
                calibration={str(k): {kk: float(vv) for kk, vv in v.items()}
                             for k, v in (d.get("calibration") or {}).items()},
                named=tuple((str(k), int(v)) for k, v in (d.get("named_points") or {}).items()))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"malformed landmark scheme in the checkpoint ({exc})") from None
        check_permutation(scheme.flip, scheme.num_points, "the checkpoint's flip permutation",
                          CheckpointError)
        check_named_points(dict(scheme.named), scheme.flip, "the checkpoint's named points", CheckpointError)
        return scheme


def check_permutation(perm, k: int, what: str, error=DatasetFormatError) -> tuple[int, ...]:
    """``perm`` as a tuple if it is a mirror permutation of ``k`` points
    (each of 0..k-1 once, and applying it twice gives the identity)."""
    perm = tuple(int(i) for i in perm)
    if len(perm) != k or sorted(perm) != list(range(k)):
        raise error(f"{what}: want each of 0-{k - 1} once, got {len(perm)} values")
    bad = next((i for i in range(k) if perm[perm[i]] != i), None)
    if bad is not None:
        raise error(f"{what}: not a mirror pairing (point {bad} -> {perm[bad]} -> {perm[perm[bad]]})")
    return perm


# Names a scheme file may give single points ("named_points"), the subject's
# right and left (the right eye is on the photo's left), and each name's
# mirror partner: what five-point alignment (ArcFace chips) reads.
POINT_NAMES: dict[str, str] = {
    "right_eye_centre": "left_eye_centre", "right_eye_outer": "left_eye_outer", "right_eye_inner": "left_eye_inner",
    "nose_tip": "nose_tip", "mouth_right": "mouth_left"}
POINT_NAMES.update({v: k for k, v in list(POINT_NAMES.items())})


def check_named_points(named: dict, flip, what: str, error=InputError) -> dict[str, int]:
    """``named`` (name -> position) as plain values if every name is one of
    :data:`POINT_NAMES`, every position one of the ``len(flip)`` points, and
    mirroring (``flip``) takes each named point to its partner's position."""
    if not isinstance(named, dict):
        raise error(f"{what}: want an object of point names and positions")
    out = {}
    for name, p in named.items():
        if name not in POINT_NAMES:
            raise error(f"{what}: unknown point name {name!r} (want some of {', '.join(sorted(POINT_NAMES))})")
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < len(flip):
            raise error(f"{what}: {name!r} must be a position 0-{len(flip) - 1}, got {p!r}")
        out[name] = p
    for name, p in out.items():
        partner = POINT_NAMES[name]
        if partner in out and flip[p] != out[partner]:
            raise error(f"{what}: mirroring takes {name} (point {p}) to point {flip[p]}, "
                        f"but {partner} is point {out[partner]}")
    return out


def _region_tuple(regions: dict[str, tuple[int, int]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((name, tuple(range(lo, hi))) for name, (lo, hi) in regions.items())


def ibug_subset(indices, name: str, crop: CropRule) -> Scheme:
    """A scheme of some of the iBUG 68 points (closed under mirroring)."""
    indices = tuple(int(i) for i in indices)
    pos = {idx: k for k, idx in enumerate(indices)}
    norm = normalisation_pair(indices) if 36 in pos and 45 in pos else None
    regions = tuple((rn, tuple(pos[i] for i in range(lo, hi) if i in pos)) for rn, (lo, hi) in REGIONS_68.items())
    return Scheme(name, len(indices), tuple(flip_permutation(indices)), norm,
                  tuple((rn, p) for rn, p in regions if p), (), crop, indices,
                  tuple(range(68)) if indices == tuple(range(68)) else None)


IBUG68 = ibug_subset(range(68), "ibug68", CropRule(FACE_CONTEXT))
EYES12 = ibug_subset(EYE_INDICES, "eyes12", CropRule(EYE_CONTEXT, EYE_CENTRE_DY))

# WFLW's 98 points: 0-32 contour, 33-41 the subject's right brow (upper
# 33-37 outer to inner, lower 38-41 inner to outer), 42-50 the left brow,
# 51-59 nose, 60-67 right eye (60 outer corner, 64 inner), 68-75 left eye
# (72 outer corner), 76-87 outer lip, 88-95 inner lip, 96-97 pupils.
_PAIRS_98 = ([(i, 32 - i) for i in range(16)]
             + [(33 + i, 46 - i) for i in range(5)] + [(38 + i, 50 - i) for i in range(4)]
             + [(55, 59), (56, 58)]
             + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
             + [(76, 82), (77, 81), (78, 80), (87, 83), (86, 84), (88, 92), (89, 91), (95, 93), (96, 97)])
# The usual WFLW 98 -> iBUG 68 mapping: iBUG point i is WFLW point WFLW98_TO_IBUG68[i].
WFLW98_TO_IBUG68: tuple[int, ...] = (
    tuple(range(0, 33, 2)) + tuple(range(33, 38)) + tuple(range(42, 47)) + tuple(range(51, 60))
    + (60, 61, 63, 64, 65, 67) + (68, 69, 71, 72, 73, 75) + tuple(range(76, 96)))


def _pairs_to_perm(pairs, k: int) -> tuple[int, ...]:
    perm = list(range(k))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


WFLW98 = Scheme(
    "wflw98", 98, _pairs_to_perm(_PAIRS_98, 98), (60, 72),
    regions=(("jaw", tuple(range(0, 33))), ("right_eyebrow", tuple(range(33, 42))),
             ("left_eyebrow", tuple(range(42, 51))), ("nose", tuple(range(51, 60))),
             ("right_eye", tuple(range(60, 68))), ("left_eye", tuple(range(68, 76))),
             ("mouth", tuple(range(76, 88))), ("inner_mouth", tuple(range(88, 96))), ("pupils", (96, 97))),
    lines=((tuple(range(0, 33)), False), (tuple(range(33, 42)), True), (tuple(range(42, 51)), True),
           (tuple(range(51, 55)), False), (tuple(range(55, 60)), False), (tuple(range(60, 68)), True),
           (tuple(range(68, 76)), True), (tuple(range(76, 88)), True), (tuple(range(88, 96)), True)),
    crop=CropRule(FACE_CONTEXT), ibug68=WFLW98_TO_IBUG68)

BUILTIN: dict[str, Scheme] = {s.name: s for s in (IBUG68, EYES12, WFLW98)}
# Point counts whose data is read as a built-in scheme unless told otherwise.
BY_COUNT: dict[int, Scheme] = {68: IBUG68, 98: WFLW98}


def scheme_of(description: dict) -> Scheme:
    """The scheme of a checkpoint or export description; one without a
    ``scheme`` entry is ibug68 (task "face") or eyes12 (task "eyes")."""
    if description.get("scheme"):
        return Scheme.from_dict(description["scheme"])
    indices = tuple(int(i) for i in description.get("landmark_indices", range(68)))
    if description.get("task") == "eyes":
        return EYES12 if indices == EYE_INDICES else ibug_subset(indices, "eyes", EYES12.crop)
    return IBUG68 if indices == tuple(range(68)) else ibug_subset(indices, "ibug68-subset", IBUG68.crop)


def require_ibug68(scheme: Scheme, what: str) -> None:
    """Raise :class:`InputError` (one line) when ``what`` (an option such as
    ``--pose``) cannot run on ``scheme``: it needs the 68 iBUG points."""
    if scheme.ibug68 is None:
        raise InputError(f"{what} needs the 68 iBUG points; this model predicts {scheme.describe()}")


# --- schemes taken from the data -------------------------------------------------------------

def read_flip_file(path: str, k: int) -> dict:
    """A scheme file: JSON, either a list of K ints (the flip permutation) or
    ``{"flip_permutation": [...], "name"?, "normalisation"?: [a, b] | "box",
    "regions"?: {name: [positions]}, "lines"?: [[positions], ...],
    "named_points"?: {name: position}}`` (a line whose first and last
    positions are equal is drawn closed; point names: :data:`POINT_NAMES`,
    e.g. ``{"right_eye_centre": 0, "left_eye_centre": 1, "nose_tip": 2,
    "mouth_right": 3, "mouth_left": 4}`` for five points as MTCNN's, which
    lets ``predict.py --chips`` cut ArcFace chips); or plain text of K ints
    separated by spaces, commas or new lines."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = [int(v) for v in text.replace(",", " ").split()]
        except ValueError:
            raise InputError(f"{path}: neither JSON nor a list of integers") from None
    if isinstance(value, list):
        value = {"flip_permutation": value}
    if not isinstance(value, dict) or "flip_permutation" not in value:
        raise InputError(f"{path}: want a list of {k} integers or an object with \"flip_permutation\"")
    value["flip_permutation"] = check_permutation(value["flip_permutation"], k, path, InputError)
    norm = value.get("normalisation", "box")
    if norm != "box" and not (isinstance(norm, list) and len(norm) == 2 and all(0 <= int(i) < k for i in norm)):
        raise InputError(f"{path}: \"normalisation\" must be \"box\" or two positions 0-{k - 1}")
    value["named_points"] = check_named_points(value.get("named_points") or {}, value["flip_permutation"],
                                               f"{path}: \"named_points\"")
    return value


def scheme_file_beside(path: str) -> str:
    """Where a scheme file beside a data set is looked for: ``labels.xml`` ->
    ``labels.scheme.json``; a folder of ``.pts`` files -> ``<folder>/scheme.json``."""
    if os.path.isdir(path):
        return os.path.join(path, "scheme.json")
    return os.path.splitext(path)[0] + ".scheme.json"


def mean_shape(points: list[np.ndarray]) -> np.ndarray:
    """Mean of ``(K, 2)`` shapes, each centred on its points' box and scaled
    by its longer side; float64 ``(K, 2)``."""
    out = []
    for p in points:
        b = landmark_box(p).astype(np.float64)
        side = max(b[2] - b[0], b[3] - b[1], 1e-6)
        out.append((np.asarray(p, np.float64) - [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]) / side)
    return np.mean(out, axis=0)


def infer_flip(points: list[np.ndarray]) -> tuple[int, ...]:
    """The flip permutation guessed from the data: mirror the mean shape about
    its box's vertical centre line and pair every point with the nearest one.
    Raises :class:`DatasetFormatError` when the pairing is not mutual."""
    m = mean_shape(points)
    b = landmark_box(m.astype(np.float32))
    mirrored = m.copy()
    mirrored[:, 0] = (b[0] + b[2]) - m[:, 0]
    dist = np.linalg.norm(mirrored[:, None, :] - m[None, :, :], axis=2)
    perm = tuple(int(j) for j in dist.argmin(axis=1))
    try:
        return check_permutation(perm, len(m), "the flip permutation inferred from the mean shape")
    except DatasetFormatError as exc:
        raise DatasetFormatError(f"{exc}; give one with --flip-permutation FILE") from None


def measure_crop(records, margin: float | None) -> tuple[CropRule, str]:
    """The crop of a custom scheme and where it comes from. ``margin`` (the
    ``--crop-margin``): the crop's side is ``1 + margin`` times the longer
    side of the points' box. Otherwise, when the records carry face boxes
    (dlib XML ``<box>``), they are taken as the face's 68-point landmark box,
    as the 300-W XML's are: the crop is the one ibug68 would take around
    that box (``FACE_CONTEXT`` times its side, same centre), expressed
    relative to the scheme's points' box (medians over the faces). Without
    boxes: ibug68's margin. Never a horizontal shift: mirroring needs a
    symmetric crop."""
    ratios, dys = [], []
    for r in records:
        if r.box is None:
            continue
        pb, fb = landmark_box(r.points), np.asarray(r.box, np.float64)
        side = max(pb[2] - pb[0], pb[3] - pb[1], 1e-6)
        ratios.append(max(fb[2] - fb[0], fb[3] - fb[1]) / side)
        dys.append(((fb[1] + fb[3]) - (pb[1] + pb[3])) / 2 / side)
    dy = float(np.median(dys)) if dys else 0.0
    if margin is not None:
        if not margin > -1:
            raise InputError(f"--crop-margin must be above -1, got {margin}")
        return CropRule(1.0 + margin, dy), "--crop-margin" + (", centre from the data's face boxes" if dys else "")
    if ratios:
        return (CropRule(FACE_CONTEXT * float(np.median(ratios)), dy),
                f"from the face boxes of {len(ratios)} faces, taken as 68-point landmark boxes")
    return CropRule(FACE_CONTEXT), "ibug68's margin (the data has no face boxes; set --crop-margin " \
                                   "if the points cover only part of the face)"


def _fmt_perm(perm: tuple[int, ...]) -> str:
    parts = []
    for i, j in enumerate(perm):
        if j == i:
            parts.append(str(i))
        elif i < j:
            parts.append(f"{i}<->{j}")
    return " ".join(parts)


def resolve_scheme(records, data_paths: list[str], name: str = "auto", flip_file: str | None = None,
                   crop_margin: float | None = None, log=None) -> Scheme:
    """The scheme of training data (``records``: every face, K points each).

    ``name``: "auto" (68 points: ibug68, 98: wflw98, else a custom scheme
    "custom<K>"), a built-in name, or the name of a custom scheme.
    ``flip_file`` (``--flip-permutation``), else a scheme file beside the
    first data set that has one (:func:`scheme_file_beside`), else the
    permutation inferred from the mean shape (:func:`infer_flip`); a custom
    scheme's permutation is printed on ``log`` for the user to check.
    ``crop_margin``: see :func:`measure_crop`; ``log``: default stderr."""
    counts = sorted({len(r.points) for r in records})
    if len(counts) != 1:
        raise DatasetFormatError(f"the data sets mix point counts ({', '.join(map(str, counts))}); "
                                 "train one scheme at a time")
    k = counts[0]
    if flip_file is None:
        flip_file = next((f for f in map(scheme_file_beside, data_paths) if os.path.isfile(f)), None)
    builtin = BUILTIN.get(name) if name != "auto" else (BY_COUNT.get(k) if flip_file is None else None)
    if builtin is not None:
        if builtin.data_points != k:
            raise DatasetFormatError(f"--scheme {name} wants {builtin.data_points} points per face, "
                                     f"the data has {k}")
        return builtin if crop_margin is None else replace(builtin, crop=CropRule(1.0 + crop_margin,
                                                                                  builtin.crop.centre_dy))
    info = read_flip_file(flip_file, k) if flip_file else {}
    if info:
        flip, source = info["flip_permutation"], flip_file
    else:
        flip, source = infer_flip([r.points for r in records]), "inferred by mirroring the mean shape"
    norm = info.get("normalisation", "box")
    lines = tuple((tuple(int(i) for i in ln), len(ln) > 2 and ln[0] == ln[-1]) for ln in info.get("lines", []))
    crop, crop_source = measure_crop(records, crop_margin)
    scheme = Scheme(
        name=str(info.get("name") or (name if name != "auto" else f"custom{k}")), num_points=k, flip=flip,
        norm=None if norm == "box" else (int(norm[0]), int(norm[1])),
        regions=tuple((str(rn), tuple(int(i) for i in p)) for rn, p in (info.get("regions") or {}).items()),
        lines=lines, crop=crop, named=tuple(info.get("named_points", {}).items()))
    check_sides(scheme, [r.points for r in records], flip_file)
    print(f"scheme '{scheme.name}': {k} points; flip permutation ({source}): {_fmt_perm(flip)}\n"
          f"  check it (a wrong one teaches mirrored faces the wrong points); to change it, write the "
          f"{k} numbers to {scheme_file_beside(data_paths[0])} or give --flip-permutation FILE\n"
          f"  NME normalised by {'points %d and %d' % scheme.norm if scheme.norm else 'the points box size'}; "
          f"crop {crop.context:.2f} x the points' box, centre {crop.centre_dy:+.2f} of its side down "
          f"({crop_source})", file=log or sys.stderr, flush=True)
    return scheme


def check_sides(scheme: Scheme, points: list[np.ndarray], source: str | None) -> None:
    """The named points' right and left are the subject's: in the data's
    mean shape (photos of faces more or less facing the camera) each
    ``right_...`` point lies left of its ``left_...`` partner in the photo.
    Raises :class:`DatasetFormatError` otherwise (swapped names would mirror
    every chip)."""
    named = dict(scheme.named)
    if not named:
        return
    m = mean_shape(points)
    for name, p in named.items():
        partner = POINT_NAMES[name]
        if name.startswith("right") or name.endswith("_right"):
            if partner in named and m[p, 0] >= m[named[partner], 0]:
                raise DatasetFormatError(
                    f"{source}: \"named_points\": {name} (point {p}) lies right of {partner} (point "
                    f"{named[partner]}) in the photos, but the subject's right is the photo's left: swap them")


def training_scheme(data_scheme: Scheme, task: str) -> Scheme:
    """What a model of ``task`` trained on ``data_scheme`` data predicts:
    the data's scheme ("face"), or eyes12 ("eyes", iBUG 68 data only)."""
    if task == "face":
        return data_scheme
    if task == "eyes":
        if data_scheme.name != "ibug68":
            raise InputError(f"--task eyes needs the 68 iBUG points; the data has {data_scheme.describe()}")
        return EYES12
    raise InputError(f"unknown task {task!r} (want 'face' or 'eyes')")


def detector_calibration(scheme: Scheme, detector: str, ibug68_calibration: dict) -> tuple[dict, str]:
    """The detector-box -> points-box calibration for ``scheme`` and where it
    comes from. ibug68 and its subsets: the detector's own (measured for the
    68-point box). Others: the one the checkpoint records for ``detector``
    (``calibrate_detector.py --write-to``), or, uncalibrated, one derived from
    the ibug68 calibration such that the scheme's crop is the crop ibug68
    would take (exact when the scheme's crop covers the same face area as
    ibug68's, which is how :func:`measure_crop` chooses it)."""
    if scheme.ibug_points is not None:
        return ibug68_calibration, "measured for ibug68"
    if detector in scheme.calibration:
        return dict(scheme.calibration[detector]), f"measured for '{scheme.name}'"
    c68 = ibug68_calibration
    scale = c68["scale"] * FACE_CONTEXT / scheme.crop.context
    return ({"dx": float(c68["dx"]), "dy": float(c68["dy"] - scheme.crop.centre_dy * scale), "scale": float(scale)},
            "uncalibrated: derived from the ibug68 calibration (measure it with "
            "training/tools/calibrate_detector.py --write-to)")
