"""Readers for landmark datasets; all yield :class:`FaceRecord`.

Formats:
- dlib / imglab XML (``<image file=...><box ...><part name x y/>``), paths
  relative to the XML, several boxes per image.
- 300-W ``.pts`` folders (1-based coordinates, converted to 0-based), the
  image beside each file.
- Keypoints CSV (header row, then ``file,x0,y0,...,x67,y67``), images in the
  folder named like the CSV's split (``training_frames_keypoints.csv`` ->
  ``training/``) or given by ``image_dir``.
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

    ``points``: float32 ``(68, 2)`` 0-based pixel ``(x, y)``; ``box``: optional
    ``(x0, y0, x1, y1)`` float32; ``group``: faces sharing a group (same photo
    or video clip) stay on one side of a train/validation split.
    """
    image_path: str
    points: np.ndarray
    box: np.ndarray | None = None
    group: str = ""
    source: str = field(default="", compare=False)


def _check_points(points: np.ndarray, where: str) -> np.ndarray:
    if points.shape != (NUM_FACE_POINTS, 2):
        raise DatasetFormatError(f"{where}: expected {NUM_FACE_POINTS} points, got {len(points)}")
    if not np.all(np.isfinite(points)):
        raise DatasetFormatError(f"{where}: non-finite coordinate")
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
    """Read a dlib/imglab XML file; one record per ``<box>`` with 68 parts.

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
    records = []
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
                records.append(_read_box(box, path, rel, bwhere))
            except DatasetFormatError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
    return records


def _read_box(box: ET.Element, path: str, rel: str, bwhere: str) -> FaceRecord:
    """One ``<box>`` of a dlib XML file as a record (``bwhere`` names it in errors)."""
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
    if sorted(parts) != list(range(NUM_FACE_POINTS)):
        raise DatasetFormatError(
            f"{bwhere}: expected parts 0-{NUM_FACE_POINTS - 1}, got {len(parts)} parts")
    pts = _check_points(np.array([parts[k] for k in range(NUM_FACE_POINTS)]), bwhere)
    return FaceRecord(
        image_path=path, points=pts,
        box=np.array([left, top, left + width - 1, top + height - 1], np.float32),
        group=photo_group(rel), source=bwhere)


def read_pts_file(pts_path: str) -> np.ndarray:
    """Read one 300-W ``.pts`` file; returns 0-based float32 ``(68, 2)``."""
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
    return _check_points(np.array(pts, dtype=np.float64).reshape(-1, 2) - 1.0, pts_path)


def _image_beside(pts_path: str) -> str | None:
    stem = os.path.splitext(pts_path)[0]
    for ext in IMAGE_EXTENSIONS:
        if os.path.isfile(stem + ext):
            return stem + ext
    return None


def _pts_record(pts_path: str, base: str) -> FaceRecord:
    """One ``.pts`` file and the image beside it; ``base`` roots the group key."""
    img = _image_beside(pts_path)
    if img is None:
        raise DatasetFormatError(f"{pts_path}: no image beside it (tried {', '.join(IMAGE_EXTENSIONS[:7])})")
    return FaceRecord(image_path=img, points=read_pts_file(pts_path),
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
            records.append(_pts_record(p, base))
        except DatasetFormatError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
    return records


def _csv_image_dir(csv_path: str) -> str:
    base = os.path.basename(csv_path)
    split = base.split("_")[0] if "_" in base else os.path.splitext(base)[0]
    return os.path.join(os.path.dirname(os.path.abspath(csv_path)), split)


def _csv_record(row: list[str], where: str, image_dir: str, check_images: bool) -> FaceRecord:
    """One CSV row (file name and 136 numbers) as a record; ``where`` names it in errors."""
    if len(row) != 1 + 2 * NUM_FACE_POINTS:
        raise DatasetFormatError(
            f"{where}: expected a file name and {2 * NUM_FACE_POINTS} numbers, got {len(row)} fields")
    bad = next((v for v in row[1:] if not _is_float(v)), None)
    if bad is not None:
        raise DatasetFormatError(f"{where}: not a number: {bad!r}")
    vals = np.array([float(v) for v in row[1:]], dtype=np.float64)
    path = os.path.join(image_dir, row[0])
    if check_images:
        _check_image(path, where)
    return FaceRecord(image_path=path, points=_check_points(vals.reshape(-1, 2), where),
                      group=photo_group(row[0]), source=where)


def read_keypoints_csv(csv_path: str, image_dir: str | None = None, check_images: bool = True,
                       errors: list[str] | None = None) -> list[FaceRecord]:
    """Read a keypoints CSV (header, then file name and 136 numbers per row).
    With an ``errors`` list, bad rows are skipped and their messages appended
    to it instead of raising."""
    image_dir = image_dir or _csv_image_dir(csv_path)
    records = []
    try:
        f = open(csv_path, newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetFormatError(f"{csv_path}: {exc.strerror or exc}") from None
    with f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if line_no == 1 or not row or not "".join(row).strip():
                continue  # header or blank
            try:
                records.append(_csv_record(row, f"{csv_path}: line {line_no}", image_dir, check_images))
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


def dataset_format(path: str) -> str:
    """``"xml"``, ``"pts"`` or ``"csv"`` for a dataset path."""
    if os.path.isdir(path):
        return "pts"
    ext = os.path.splitext(path)[1].lower()
    if ext == ".xml":
        return "xml"
    if ext == ".csv":
        return "csv"
    if ext == ".pts":
        return "pts"
    if not os.path.exists(path):
        raise DatasetFormatError(f"{path}: no such file or folder")
    raise DatasetFormatError(f"{path}: unknown dataset format (want a .xml, a .csv or a folder of .pts files)")


def read_dataset(path: str, skip_bad: bool = False) -> list[FaceRecord]:
    """Read any supported dataset. With ``skip_bad``, malformed records are
    dropped (their count and the first message on stderr) instead of raising."""
    fmt = dataset_format(path)
    if not os.path.exists(path):
        raise DatasetFormatError(f"{path}: no such file or folder")
    errors: list[str] | None = [] if skip_bad else None
    if fmt == "xml":
        records = read_dlib_xml(path, errors=errors)
    elif fmt == "csv":
        records = read_keypoints_csv(path, errors=errors)
    else:
        records = read_pts_folder(path, errors=errors)
    if errors:
        print(f"{path}: skipped {len(errors)} bad record(s); first: {errors[0]}", file=sys.stderr)
    return records


def read_datasets(paths: list[str], skip_bad: bool = False) -> list[FaceRecord]:
    """Read and concatenate several datasets of any format; groups are
    prefixed with the dataset's base name (``name::group``) so they do not
    collide across datasets and splits are the same on every machine."""
    out = []
    for p in paths:
        name = dataset_name(p)
        for r in read_dataset(p, skip_bad=skip_bad):
            r.group = f"{name}::{r.group}"
            out.append(r)
    return out


def dataset_name(path: str) -> str:
    """Base name of a dataset file or folder (``labels_300w_subset_train.xml``)."""
    return os.path.basename(os.path.normpath(path))
