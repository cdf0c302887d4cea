"""Readers for landmark datasets; all yield :class:`FaceRecord`.

Formats (any number of points K per face, the same K within a data set;
:mod:`common.schemes` says what the points are):
- dlib / imglab XML (``<image file=...><box ...><part name x y/>``), paths
  relative to the XML, several boxes per image, parts named 0 to K-1.
- 300-W ``.pts`` folders (1-based coordinates, converted to 0-based), the
  image beside each file; ``n_points`` gives K (a file without that line
  holds 68 points unless the folder's first file says otherwise).
- Keypoints CSV (header row, then ``file,x0,y0,...``: 2K numbers, K from the
  header), images in the folder named like the CSV's split
  (``training_frames_keypoints.csv`` -> ``training/``) or given by ``image_dir``.
- WFLW annotation lines (``.txt``): 98 ``x y`` pairs, the face box
  ``x_min y_min x_max y_max``, six attribute flags, and the image path
  relative to an image root (:func:`read_wflw`).
"""
from __future__ import annotations

import csv
import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from .errors import DatasetFormatError
from .images import IMAGE_EXTENSIONS
from .landmarks import NUM_FACE_POINTS


@dataclass
class FaceRecord:
    """One annotated face.

    ``points``: float32 ``(K, 2)`` 0-based pixel ``(x, y)``; ``box``: optional
    ``(x0, y0, x1, y1)`` float32; ``group``: faces sharing a group (same photo
    or video clip) stay on one side of a train/validation split;
    ``attributes``: WFLW's six flags (pose, expression, illumination,
    make_up, occlusion, blur), None elsewhere.
    """
    image_path: str
    points: np.ndarray
    box: np.ndarray | None = None
    group: str = ""
    source: str = field(default="", compare=False)
    attributes: dict | None = field(default=None, compare=False)


# Larger coordinates are no photo's: OpenCV's warps keep pixel positions in
# 16-bit fixed point, and float32 loses whole pixels beyond this.
MAX_COORDINATE = 32767


def _check_points(points: np.ndarray, where: str, k: int | None = NUM_FACE_POINTS) -> np.ndarray:
    """``points`` as float32 if it is ``(k, 2)`` (any K >= 1 when ``k`` is None) and finite."""
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 1 or (k is not None and len(points) != k):
        raise DatasetFormatError(f"{where}: expected {k if k is not None else 'some'} points, got {len(points)}")
    if not np.all(np.isfinite(points)):
        raise DatasetFormatError(f"{where}: non-finite coordinate")
    if np.abs(points).max() > MAX_COORDINATE:
        raise DatasetFormatError(f"{where}: coordinate {float(np.abs(points).max()):.4g} out of range "
                                 f"(at most {MAX_COORDINATE} pixels from the image origin)")
    return points.astype(np.float32)


def _check_image(path: str, where: str) -> None:
    if not os.path.isfile(path):
        raise DatasetFormatError(f"{where}: image not found: {path}")


def photo_group(path: str) -> str:
    """Group key of a photo or clip: the file stem without a trailing ``_<n>``.

    ``afw/1051618982_2.jpg`` -> ``afw/1051618982`` (faces of one AFW photo);
    ``training/Abdel_Aziz_Al-Hakim_01.jpg`` -> ``training/Abdel_Aziz_Al-Hakim``
    (frames of one clip).
    """
    stem = os.path.splitext(path)[0]
    return re.sub(r"_\d+$", "", stem)


def read_dlib_xml(xml_path: str, check_images: bool = True,
                  errors: list[str] | None = None) -> list[FaceRecord]:
    """Read a dlib/imglab XML file; one record per ``<box>``, each with the
    same number of parts as the first box read.

    With an ``errors`` list, malformed images and boxes are skipped and their
    messages appended to it instead of raising."""
    root_dir = os.path.dirname(os.path.abspath(xml_path))
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        raise DatasetFormatError(f"{xml_path}: not valid XML ({exc})") from None
    except OSError as exc:
        raise DatasetFormatError(f"{xml_path}: {exc.strerror or exc}") from None
    images = tree.getroot().find("images")
    if images is None:
        raise DatasetFormatError(f"{xml_path}: no <images> element")
    records: list[FaceRecord] = []
    for i, image in enumerate(images.iter("image")):
        rel = image.get("file")
        where = f"{xml_path}: <image> #{i + 1}"
        if not rel:
            if errors is not None:
                errors.append(f"{where}: missing file attribute")
                continue
            raise DatasetFormatError(f"{where}: missing file attribute")
        where = f"{xml_path}: <image file='{rel}'>"
        path = os.path.normpath(os.path.join(root_dir, rel))
        if check_images:
            try:
                _check_image(path, where)
            except DatasetFormatError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
                continue
        for j, box in enumerate(image.iter("box")):
            bwhere = f"{where} <box> #{j + 1}"
            try:
                records.append(_read_box(box, path, rel, bwhere, len(records[0].points) if records else None))
            except DatasetFormatError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
    return records


def _read_box(box: ET.Element, path: str, rel: str, bwhere: str, k: int | None = None) -> FaceRecord:
    """One ``<box>`` of a dlib XML file as a record (``bwhere`` names it in
    errors); ``k``: the parts every box of the file must have (None: any)."""
    try:
        top, left = float(box.get("top")), float(box.get("left"))
        width, height = float(box.get("width")), float(box.get("height"))
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{bwhere}: box needs numeric top, left, width, height") from None
    parts = {}
    for part in box.iter("part"):
        try:
            parts[int(part.get("name"))] = (float(part.get("x")), float(part.get("y")))
        except (TypeError, ValueError):
            raise DatasetFormatError(
                f"{bwhere}: <part name='{part.get('name')}'> has a non-number") from None
    n = k if k is not None else len(parts)
    if not parts or sorted(parts) != list(range(n)):
        raise DatasetFormatError(f"{bwhere}: expected parts 0-{n - 1}, got {len(parts)} parts")
    pts = _check_points(np.array([parts[i] for i in range(n)], np.float64), bwhere, None)
    return FaceRecord(
        image_path=path, points=pts,
        box=np.array([left, top, left + width - 1, top + height - 1], np.float32),
        group=photo_group(rel), source=bwhere)


def read_pts_file(pts_path: str, expected: int | None = None) -> np.ndarray:
    """Read one 300-W ``.pts`` file; returns 0-based float32 ``(K, 2)``. K is
    its ``n_points``; a file without that line must hold ``expected`` points
    (default 68); with both, they must agree."""
    try:
        with open(pts_path, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f]
    except OSError as exc:
        raise DatasetFormatError(f"{pts_path}: {exc.strerror or exc}") from None
    try:
        start = lines.index("{")
        end = lines.index("}", start)
    except ValueError:
        raise DatasetFormatError(f"{pts_path}: points must be between '{{' and '}}' lines") from None
    n_declared = None
    for ln in lines[:start]:
        if ln.startswith("n_points"):
            try:
                n_declared = int(ln.split(":", 1)[1])
            except (IndexError, ValueError):
                raise DatasetFormatError(f"{pts_path}: bad n_points line: {ln!r}") from None
    pts = []
    for k in range(start + 1, end):
        fields = lines[k].split()
        if not fields:
            continue
        try:
            if len(fields) != 2:
                raise ValueError
            pts.append((float(fields[0]), float(fields[1])))
        except ValueError:
            raise DatasetFormatError(
                f"{pts_path}: line {k + 1}: expected two numbers, got {lines[k]!r}") from None
    if n_declared is not None and n_declared != len(pts):
        raise DatasetFormatError(f"{pts_path}: n_points says {n_declared}, found {len(pts)}")
    if n_declared is not None and expected is not None and n_declared != expected:
        raise DatasetFormatError(f"{pts_path}: n_points is {n_declared}, the data set's first file has {expected}")
    k = n_declared if n_declared is not None else (expected or NUM_FACE_POINTS)
    return _check_points(np.array(pts, dtype=np.float64).reshape(-1, 2) - 1.0, pts_path, k)


def _image_beside(pts_path: str) -> str | None:
    stem = os.path.splitext(pts_path)[0]
    for ext in IMAGE_EXTENSIONS:
        if os.path.isfile(stem + ext):
            return stem + ext
    return None


def _pts_record(pts_path: str, base: str, expected: int | None = None) -> FaceRecord:
    """One ``.pts`` file and the image beside it; ``base`` roots the group key."""
    img = _image_beside(pts_path)
    if img is None:
        raise DatasetFormatError(f"{pts_path}: no image beside it (tried {', '.join(IMAGE_EXTENSIONS[:7])})")
    return FaceRecord(image_path=img, points=read_pts_file(pts_path, expected),
                      group=photo_group(os.path.relpath(img, base)), source=pts_path)


def read_pts_folder(folder: str, errors: list[str] | None = None) -> list[FaceRecord]:
    """Read every ``.pts`` file under ``folder`` (recursively, sorted by path),
    or one ``.pts`` file. With an ``errors`` list, bad files are skipped and
    their messages appended to it instead of raising."""
    if os.path.isfile(folder):
        files, base = [folder], os.path.dirname(folder)
    else:
        files, base = sorted(os.path.join(d, f) for d, _, fs in os.walk(folder)
                             for f in fs if f.lower().endswith(".pts")), folder
    if not files:
        raise DatasetFormatError(f"{folder}: no .pts files found")
    records = []
    for p in files:
        try:
            records.append(_pts_record(p, base, len(records[0].points) if records else None))
        except DatasetFormatError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
    return records


def _csv_image_dir(csv_path: str) -> str:
    base = os.path.basename(csv_path)
    split = base.split("_")[0] if "_" in base else os.path.splitext(base)[0]
    return os.path.join(os.path.dirname(os.path.abspath(csv_path)), split)


def _csv_record(row: list[str], where: str, image_dir: str, check_images: bool,
                k: int = NUM_FACE_POINTS) -> FaceRecord:
    """One CSV row (file name and ``2 k`` numbers) as a record; ``where`` names it in errors."""
    if len(row) != 1 + 2 * k:
        raise DatasetFormatError(
            f"{where}: expected a file name and {2 * k} numbers, got {len(row)} fields")
    bad = next((v for v in row[1:] if not _is_float(v)), None)
    if bad is not None:
        raise DatasetFormatError(f"{where}: not a number: {bad!r}")
    vals = np.array([float(v) for v in row[1:]], dtype=np.float64)
    path = os.path.join(image_dir, row[0])
    if check_images:
        _check_image(path, where)
    return FaceRecord(image_path=path, points=_check_points(vals.reshape(-1, 2), where, k),
                      group=photo_group(row[0]), source=where)


def read_keypoints_csv(csv_path: str, image_dir: str | None = None, check_images: bool = True,
                       errors: list[str] | None = None) -> list[FaceRecord]:
    """Read a keypoints CSV (header, then file name and 2K numbers per row; K
    from the header's column count, or from the first row when the header's
    count is not odd). With an ``errors`` list, bad rows are skipped and their messages appended
    to it instead of raising."""
    image_dir = image_dir or _csv_image_dir(csv_path)
    records = []
    try:
        f = open(csv_path, newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetFormatError(f"{csv_path}: {exc.strerror or exc}") from None
    k = None
    with f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if line_no == 1:
                k = (len(row) - 1) // 2 if len(row) >= 3 and len(row) % 2 == 1 else None
                continue  # header
            if not row or not "".join(row).strip():
                continue  # blank
            if k is None:
                if len(row) < 3 or len(row) % 2 == 0:
                    raise DatasetFormatError(f"{csv_path}: line {line_no}: expected a file name and an even "
                                             f"number of values, got {len(row)} fields")
                k = (len(row) - 1) // 2
            try:
                records.append(_csv_record(row, f"{csv_path}: line {line_no}", image_dir, check_images, k))
            except DatasetFormatError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
    return records


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


WFLW_POINTS = 98
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make_up", "occlusion", "blur")


def wflw_image_root(txt_path: str) -> str:
    """Default image root of a WFLW annotation file: the ``WFLW_images``
    folder beside it or beside one of its parent folders (the release's
    layout), else the file's own folder."""
    folder = os.path.dirname(os.path.abspath(txt_path))
    for _ in range(4):
        candidate = os.path.join(folder, "WFLW_images")
        if os.path.isdir(candidate):
            return candidate
        folder = os.path.dirname(folder)
    return os.path.dirname(os.path.abspath(txt_path))


def read_wflw(txt_path: str, image_root: str | None = None, check_images: bool = True,
              errors: list[str] | None = None) -> list[FaceRecord]:
    """Read a WFLW annotation file: per line 196 numbers (98 ``x y`` pairs,
    taken as 0-based pixels), the face box ``x_min y_min x_max y_max``, six
    0/1 attribute flags (:data:`WFLW_ATTRIBUTES`), and the image path relative
    to ``image_root`` (default :func:`wflw_image_root`). With an ``errors``
    list, bad lines are skipped and their messages appended to it."""
    root = image_root or wflw_image_root(txt_path)
    n_num = 2 * WFLW_POINTS + 4 + len(WFLW_ATTRIBUTES)
    try:
        f = open(txt_path, encoding="utf-8")
    except OSError as exc:
        raise DatasetFormatError(f"{txt_path}: {exc.strerror or exc}") from None
    records = []
    with f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{txt_path}: line {line_no}"
            try:
                if len(fields) < n_num + 1:
                    raise DatasetFormatError(f"{where}: expected {n_num} numbers and an image path, "
                                             f"got {len(fields)} fields")
                bad = next((v for v in fields[:n_num] if not _is_float(v)), None)
                if bad is not None:
                    raise DatasetFormatError(f"{where}: not a number: {bad!r}")
                vals = np.array([float(v) for v in fields[:n_num]], np.float64)
                rel = " ".join(fields[n_num:])
                path = os.path.normpath(os.path.join(root, rel))
                if check_images:
                    _check_image(path, where)
                records.append(FaceRecord(
                    image_path=path, points=_check_points(vals[:2 * WFLW_POINTS].reshape(-1, 2), where, WFLW_POINTS),
                    box=vals[2 * WFLW_POINTS:2 * WFLW_POINTS + 4].astype(np.float32),
                    group=photo_group(rel), source=where,
                    attributes={k: int(v) for k, v in zip(WFLW_ATTRIBUTES, vals[2 * WFLW_POINTS + 4:])}))
            except DatasetFormatError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
    return records


def _looks_like_wflw(path: str) -> bool:
    """Whether a ``.txt`` file's first non-blank line looks like WFLW's (more
    fields than its 196 point coordinates; the reader checks the rest)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = next((ln for ln in f if ln.strip()), "")
    except OSError:
        return False
    return len(first.split()) > 2 * WFLW_POINTS


def dataset_format(path: str) -> str:
    """``"xml"``, ``"pts"``, ``"csv"`` or ``"wflw"`` (a ``.txt`` file of WFLW lines) for a dataset path."""
    if os.path.isdir(path):
        return "pts"
    ext = os.path.splitext(path)[1].lower()
    if ext == ".xml":
        return "xml"
    if ext == ".csv":
        return "csv"
    if ext == ".pts":
        return "pts"
    if ext == ".txt" and _looks_like_wflw(path):
        return "wflw"
    if not os.path.exists(path):
        raise DatasetFormatError(f"{path}: no such file or folder")
    raise DatasetFormatError(f"{path}: unknown dataset format (want a .xml, a .csv, a WFLW .txt or a folder of .pts files)")


def read_dataset(path: str, skip_bad: bool = False, image_root: str | None = None) -> list[FaceRecord]:
    """Read any supported dataset. With ``skip_bad``, malformed records are
    dropped (their count and the first message on stderr) instead of raising.
    ``image_root``: WFLW files' image root (default :func:`wflw_image_root`)."""
    fmt = dataset_format(path)
    if not os.path.exists(path):
        raise DatasetFormatError(f"{path}: no such file or folder")
    errors: list[str] | None = [] if skip_bad else None
    if fmt == "xml":
        records = read_dlib_xml(path, errors=errors)
    elif fmt == "csv":
        records = read_keypoints_csv(path, errors=errors)
    elif fmt == "wflw":
        records = read_wflw(path, image_root, errors=errors)
    else:
        records = read_pts_folder(path, errors=errors)
    if errors:
        print(f"{path}: skipped {len(errors)} bad record(s); first: {errors[0]}", file=sys.stderr)
    return records


def read_datasets(paths: list[str], skip_bad: bool = False, image_root: str | None = None) -> list[FaceRecord]:
    """Read and concatenate several datasets of any format; groups are
    prefixed with the dataset's base name (``name::group``) so they do not
    collide across datasets and splits are the same on every machine."""
    out = []
    for p in paths:
        name = dataset_name(p)
        for r in read_dataset(p, skip_bad=skip_bad, image_root=image_root):
            r.group = f"{name}::{r.group}"
            out.append(r)
    return out


def dataset_name(path: str) -> str:
    """Base name of a dataset file or folder (``labels_300w_subset_train.xml``)."""
    return os.path.basename(os.path.normpath(path))
