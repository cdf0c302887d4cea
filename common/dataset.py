"""Torch datasets over :class:`~common.readers.FaceRecord` lists, with an
in-memory cache of decoded face regions, and the train/validation split."""
from __future__ import annotations

import sys
import time
import zlib

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import InputError
from .readers import FaceRecord
from .images import read_image
from .landmarks import landmark_box
from . import transforms as T

# The cache keeps, per face, a square of CACHE_CONTEXT x the task crop side,
# stored so that the task crop is CACHE_RESOLUTION x the network input size:
# room for rotation and box jitter, and no upsampling at training time.
CACHE_CONTEXT = 2.0
CACHE_RESOLUTION = 1.15


def split_records(records: list[FaceRecord], val_fraction: float, seed: int = 0,
                  val_from: list[str] | None = None) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """Split by group (photo or clip) so that all faces of one group land on
    the same side. The decision hashes the group name with ``seed``, so it is
    the same on every machine and for every run with the same settings.
    ``val_from``: only groups whose dataset prefix is one of these names (the
    dataset file or folder's base name) may go to validation."""
    train, val = [], []
    for r in records:
        prefix = r.group.split("::", 1)[0]
        eligible = not val_from or prefix in val_from
        h = zlib.crc32(f"{seed}:{r.group}".encode()) % 100000 / 100000.0
        (val if eligible and h < val_fraction else train).append(r)
    return train, val


def split_like_run(records: list[FaceRecord], config: dict) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """``(trained on, held out)``: the split a training run with ``config``
    (a checkpoint's ``config``: ``val_fraction``, ``split_seed``,
    ``val_from``) made of ``records``. A run validated on separate data
    (``val_data``) or with no validation fraction held nothing out."""
    if config.get("val_data") or not config.get("val_fraction"):
        return list(records), []
    from .readers import dataset_name
    val_from = [dataset_name(v) for v in config.get("val_from") or []] or None
    return split_records(records, config["val_fraction"], config.get("split_seed", 0), val_from)


def is_final_fit(config: dict) -> bool:
    """Whether a run (a checkpoint's ``config``, or ``train.py``'s arguments
    as a dict) was a final fit: trained on every face, ``val_fraction`` 0 and
    no separate validation data, so it held nothing out."""
    return "val_fraction" in config and not config["val_fraction"] and not config.get("val_data")


def held_out_seen(held_out: list[FaceRecord], config: dict) -> int:
    """How many of a run's ``held_out`` faces another run (a checkpoint's
    ``config``: its ``data`` and split) trained on: faces of its data sets
    that its own split did not hold out. 0 for a checkpoint that does not
    name its data."""
    from .readers import dataset_name
    names = {dataset_name(d) for d in config.get("data") or []}
    theirs = [r for r in held_out if r.group.split("::", 1)[0] in names]
    return len(split_like_run(theirs, config)[0]) if theirs else 0


def records_of_split(records: list[FaceRecord], config: dict, name: str, split: str,
                     weights: str) -> list[FaceRecord]:
    """The faces of data set ``name`` that the run with ``config`` (the
    checkpoint ``weights``' ``config``) trained on (``split`` "train"), held
    out ("heldout"), or all of them ("all"). Raises
    :class:`common.errors.InputError` when that run held nothing of ``name`` out
    (validated on other data, or a final fit: ``val_fraction`` 0)."""
    if split == "all":
        return records
    from .readers import dataset_name
    val_from = [dataset_name(v) for v in config.get("val_from") or []] or None
    if config.get("val_data") or (val_from and name not in val_from) or \
            name not in [dataset_name(d) for d in config.get("data", [])]:
        raise InputError(f"{weights} was not trained with a held-out part of {name}")
    if split == "heldout" and is_final_fit(config):
        raise InputError(f"{weights} held nothing of {name} out: a final fit on every face (--val-fraction 0)")
    train, held = split_like_run(records, config)
    return held if split == "heldout" else train


class CachedFace:
    """One face: a grayscale image (whole photo or a cached region), its
    ``(N, 2)`` points in that image's pixels, and ``scale``: that image's pixels per
    pixel of the photo."""
    __slots__ = ("image", "points", "scale")

    def __init__(self, image: np.ndarray, points: np.ndarray, scale: float = 1.0):
        self.image, self.points, self.scale = image, points, scale


def load_face(record: FaceRecord, task: "str | T.CropRule", input_size: int, cache: bool) -> CachedFace:
    """Decode a record; with ``cache``, keep only a region around its task crop,
    downscaled (the geometry is exact: points follow the same crop/resize)."""
    image = read_image(record.image_path, gray=True)
    if not cache:
        return CachedFace(image, record.points)
    region = T.task_region(task, landmark_box(record.points))
    big = T.Region(region.cx, region.cy, region.side * CACHE_CONTEXT)
    out_side = int(round(input_size * CACHE_RESOLUTION * CACHE_CONTEXT))
    img, pts = T.crop(image, record.points, big)
    scale = 1.0
    if img.shape[0] > out_side:
        scale = out_side / img.shape[0]
        img, pts = T.resize(img, pts, out_side)
    return CachedFace(img, pts, scale)


class LandmarkDataset(Dataset):
    """Yields ``(image tensor (1, S, S), points (K, 2) in input pixels)``.

    Augmentation randomness depends only on ``(seed, epoch, index)``, so a
    resumed run sees exactly the samples an uninterrupted one would.
    ``mirror_offsets``: data set name -> its annotation's horizontal offset in
    photo pixels (:func:`~common.transforms.mirror`); data sets not named have 0.
    ``task``: "face", "eyes" or a scheme's :class:`~common.transforms.CropRule`;
    ``flip``: the flip permutation of the records' points (default iBUG 68);
    ``styles``: data set name -> its annotation style, the head that learns
    it (``train.py --style-heads``); data sets not named have style 0.
    A sample is ``(image, points, style, *teacher crop)``."""

    def __init__(self, records: list[FaceRecord], task: "str | T.CropRule", input_size: int,
                 indices: tuple[int, ...], train: bool, aug: T.AugmentConfig,
                 mean: float, std: float, seed: int = 0, cache: bool = True,
                 name: str = "data", mirror_offsets: dict[str, float] | None = None,
                 flip: tuple[int, ...] = T.FLIP_PERMUTATION_68,
                 teacher_view: tuple[int, float, float] | None = None, styles: dict[str, int] | None = None):
        self.records, self.task, self.train, self.seed = records, task, train, seed
        offsets, styles = mirror_offsets or {}, styles or {}
        self.mirror_offsets = [float(offsets.get(r.group.split("::", 1)[0], 0.0)) for r in records]
        self.styles = [int(styles.get(r.group.split("::", 1)[0], 0)) for r in records]
        self.cache, self.epoch = cache, 0
        # the cache keeps the resolution of the larger of the two views
        self.cache_size = max(input_size, teacher_view[0] if teacher_view and train else 0)
        self.train_tf = T.train_pipeline(task, input_size, indices, aug, mean, std, flip, teacher_view)
        self.eval_tf = T.eval_pipeline(task, input_size, indices, mean, std)
        self.faces: list[CachedFace] | None = None
        if cache:
            self.faces = self._build_cache(name)

    def _build_cache(self, name: str) -> list[CachedFace]:
        faces, t0, n = [], time.time(), len(self.records)
        for i, r in enumerate(self.records):
            faces.append(load_face(r, self.task, self.cache_size, cache=True))
            if (i + 1) % 500 == 0 or i + 1 == n:
                mb = sum(f.image.nbytes for f in faces) / 2**20
                print(f"\rcaching {name}: {i + 1}/{n} faces, {mb:.0f} MB, "
                      f"{time.time() - t0:.0f}s", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        return faces

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        face = self.faces[i] if self.faces is not None else \
            load_face(self.records[i], self.task, self.cache_size, cache=False)
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            x, pts, *teacher = self.train_tf(face.image, face.points, rng, self.mirror_offsets[i] * face.scale)
        else:
            x, pts, _ = self.eval_tf(face.image, face.points, landmark_box(face.points))
            teacher = []
        return (x, torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32)), self.styles[i], *teacher)
