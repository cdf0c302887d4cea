"""One landmark model (face or eyes) and the crop that feeds it, run by one of
two back ends chosen by the file's suffix: ``.pt`` checkpoints by PyTorch
(:class:`TorchBackend`), ``.onnx`` exports (``inference/export_onnx.py``) by
ONNX Runtime (:class:`OnnxBackend`). The PyTorch back end takes the levers
of :class:`common.model_options.TorchLevers` (bfloat16, channels-last,
torch.compile), which ``predict.py`` and ``benchmark.py`` pass alike; an
ONNX export refuses them. Either file describes itself (task,
landmark indices, input size, normalisation, ...): a checkpoint in its keys,
an export in its ``metadata_props``; :class:`LandmarkModel` reads that
description once, whichever the back end.

The ONNX graph takes the normalised grayscale crop batch ``image``
``(B, 1, S, S)`` float32 (``(pixel / 255 - mean) / std``, batch size free)
and gives ``points`` ``(B, K, 2)`` float32: the decoded ``(x, y)`` in input
pixels, 0-based pixel centres. Its metadata holds one JSON value per key of
:data:`DESCRIBED`. Running it needs ``onnxruntime``; writing it
(:mod:`common.export`) needs ``onnx`` too.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

from . import transforms as T
from .checkpoint import load_model
from .device import int8_pairs_saturate
from .errors import CheckpointError, CompileError, DeviceError
from .landmarks import landmark_box
from .model_options import TorchLevers
from .schemes import scheme_of

ONNX_FORMAT = "face-landmark-onnx"
ONNX_VERSION = 1
# Checkpoint keys copied into the ONNX metadata (JSON-encoded values).
DESCRIBED = ("task", "scheme", "landmark_indices", "head", "input_size", "normalisation", "crop", "scores", "epoch",
             "config", "mirror_offset", "averaged_from")
INPUT_NAME, OUTPUT_NAME, SCORES_NAME = "image", "points", "point_scores"
# --multi-crop: the box as given, 0.9x and 1.1x its size, and shifted by 3% of
# its width left, right, up and down, as (scale, dx, dy); the seven
# predictions are averaged (measured: weights/README.md, Ablations).
MULTI_CROP = ((1.0, 0.0, 0.0), (0.9, 0.0, 0.0), (1.1, 0.0, 0.0),
              (1.0, -0.03, 0.0), (1.0, 0.03, 0.0), (1.0, 0.0, -0.03), (1.0, 0.0, 0.03))


class TorchBackend:
    """A ``.pt`` checkpoint run by PyTorch on ``device``; ``model`` is the
    :class:`common.model.LandmarkNet`. ``levers``
    (:class:`common.model_options.TorchLevers`): bfloat16 autocast of the
    network (decoding and scores stay float32), channels-last memory format,
    ``torch.compile`` of network and decoding. Compiling happens here, on a
    batch of one: a failure (no C compiler, an unsupported operation) raises
    :class:`common.errors.CompileError` with the reason, never a silent
    uncompiled run; ``compile_s`` is the seconds it took (None uncompiled)."""

    def __init__(self, path: str, device: torch.device, levers: TorchLevers = TorchLevers()):
        self.model, ckpt = load_model(path)
        self.model.to(device)
        self.device, self.levers = device, levers
        self.description = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler")}
        if levers.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._predict = torch.compile(self._forward) if levers.compile else self._forward
        self.compile_s = None
        if levers.compile:
            size = int(self.description["input_size"])
            t = time.perf_counter()
            try:
                self.run(torch.zeros(1, 1, size, size))
            except Exception as exc:  # inductor raises many types (no compiler, unsupported op, ...)
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                raise CompileError(f"{path}: --compile: torch.compile failed here "
                                      f"({exc.__class__.__name__}: {msg[:200]})") from None
            self.compile_s = time.perf_counter() - t

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.levers.bf16):
            out = self.model(x)
        return self.model.decode(out), self.model.point_scores(out)  # both work in float32

    def run(self, batch: torch.Tensor) -> np.ndarray:
        """Normalised float32 ``(B, 1, S, S)`` -> float32 ``(B, K, 2)`` in input pixels."""
        return self.run_with_scores(batch)[0]

    def run_with_scores(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`run` plus float32 ``(B, K)`` point scores (None: the model has none)."""
        x = batch.to(self.device)
        if self.levers.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            points, scores = self._predict(x)
        return (points.float().cpu().numpy(),
                None if scores is None else scores.float().cpu().numpy())


class OnnxBackend:
    """A ``.onnx`` export run by ONNX Runtime. ``threads``: its intra-op
    threads, by default ``torch.get_num_threads()`` so that one setting
    governs both back ends. ``device`` "cuda" needs onnxruntime-gpu.

    ``int8_reference``: run with ONNX Runtime's graph optimisations off, so
    an int8 model's quantised layers compute in float32 on the quantised
    values: what int8 arithmetic gives without this CPU's int8 kernels
    (slower; for measuring them, ``evaluate.py --int8-reference``)."""

    def __init__(self, path: str, device: torch.device, threads: int | None = None,
                 int8_reference: bool = False):
        try:
            import onnxruntime as ort
        except ImportError:
            raise CheckpointError(f"{path}: ONNX weights need onnxruntime (pip install onnxruntime)") from None
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: ONNX model not found")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise DeviceError(f"{path}: device {device} requested, but this onnxruntime has no CUDA "
                                  "provider (install onnxruntime-gpu, or use --device cpu)")
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        if int8_reference:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            self.session = ort.InferenceSession(path, opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise CheckpointError(f"{path}: not a readable ONNX model ({msg[:160]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != ONNX_FORMAT:
            raise CheckpointError(f"{path}: not an ONNX export of this toolkit (no description in its "
                                  "metadata; export with inference/export_onnx.py)")
        if int(meta.get("version", 0)) > ONNX_VERSION:
            raise CheckpointError(f"{path}: ONNX export version {meta.get('version')} is newer than this "
                                  f"code understands ({ONNX_VERSION})")
        self.description = {k: json.loads(meta[k]) for k in DESCRIBED + ("quantization",) if k in meta}
        quant = self.description.get("quantization")
        if quant and not quant.get("reduce_range") and not int8_reference and int8_pairs_saturate():
            print(f"note: {path}: int8 weights in 8 bits, which ONNX Runtime computes with overflow on this CPU "
                  "(no VNNI): points move; re-export it with inference/export_onnx.py --int8 (7-bit weights)",
                  file=sys.stderr)
        self._input = self.session.get_inputs()[0].name
        self.has_scores = SCORES_NAME in {o.name for o in self.session.get_outputs()}

    def run(self, batch: torch.Tensor) -> np.ndarray:
        """Normalised float32 ``(B, 1, S, S)`` -> float32 ``(B, K, 2)`` in input pixels."""
        x = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {self._input: x})[0]

    def run_with_scores(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`run` plus float32 ``(B, K)`` point scores; None for exports
        made before they were added."""
        if not self.has_scores:
            return self.run(batch), None
        x = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        points, scores = self.session.run([OUTPUT_NAME, SCORES_NAME], {self._input: x})
        return points, scores


class LandmarkModel:
    """A face or eye model with the crop that feeds it.

    ``path``: a ``.pt`` checkpoint or its ``.onnx`` export (by suffix);
    ``levers``: :class:`common.model_options.TorchLevers` for a ``.pt``
    (an ``.onnx`` with any raises :class:`common.errors.CheckpointError`);
    ``task``: "face" or "eyes" (None accepts either; see ``.task``); a file
    for another task, or a missing or foreign one, raises
    :class:`common.errors.CheckpointError`. ``backend`` does the network
    part; ``description`` is the file's self-description; ``scheme``
    (:class:`common.schemes.Scheme`) what its K points are and its crop.
    """

    # Test-time mirroring: average with the prediction on the mirrored crop.
    flip_test = False
    # Test-time crops: average the predictions on the MULTI_CROP variants of each box.
    multi_crop = False

    def __init__(self, path: str, task: str | None, device: torch.device, int8_reference: bool = False,
                 levers: TorchLevers = TorchLevers()):
        onnx = path.lower().endswith(".onnx")
        if onnx and levers.names:
            raise CheckpointError(f"{path}: {', '.join(levers.names)}: levers of the PyTorch back end, "
                                  "for .pt weights (give the .pt checkpoint, or leave them out)")
        self.backend = OnnxBackend(path, device, int8_reference=int8_reference) if onnx \
            else TorchBackend(path, device, levers)
        desc = self.description = self.backend.description
        if task is not None and desc.get("task") != task:
            raise CheckpointError(f"{path}: this model is for the '{desc.get('task')}' task, "
                                  f"but the '{task}' task is needed here")
        self.path, self.task, self.device = path, desc["task"], device
        self.input_size = int(desc["input_size"])
        norm = desc.get("normalisation") or {}
        self.mean, self.std = float(norm.get("mean", 0.5)), float(norm.get("std", 0.25))
        self.indices: list[int] = [int(i) for i in desc["landmark_indices"]]
        self.scheme = scheme_of(desc)
        if self.scheme.num_points != len(self.indices):
            raise CheckpointError(f"{path}: its scheme has {self.scheme.num_points} points, its model "
                                  f"{len(self.indices)}")
        self.scores = desc.get("scores", {})
        self.epoch = desc.get("epoch")

    def predict_boxes(self, gray: np.ndarray, boxes: list[np.ndarray], flip: bool | None = None,
                      multi: bool | None = None) -> np.ndarray:
        """Points for every box of one image in one batch.

        ``gray``: ``(H, W)`` uint8 image; ``boxes``: landmark-convention boxes
        ``(x0, y0, x1, y1)``. Returns float32 ``(B, K, 2)`` in image pixels.
        Each crop is the scheme's crop (``scheme.crop``) of the box, cut from the full-resolution
        image, so large photos cost no more than small ones here. ``flip``:
        average with the mirrored crop (None: :attr:`flip_test`); ``multi``:
        average over the :data:`MULTI_CROP` crops (None: :attr:`multi_crop`).
        """
        return self.predict_crops([(gray, box) for box in boxes], flip, multi)[0]

    def predict_boxes_with_scores(self, gray: np.ndarray, boxes: list[np.ndarray],
                                  flip: bool | None = None,
                                  multi: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict_boxes` plus float32 ``(B, K)`` point scores in [0, 1]
        (None when the model has none: regression head, older ONNX exports)."""
        return self.predict_crops([(gray, box) for box in boxes], flip, multi)

    def predict_crops(self, items: list[tuple[np.ndarray, np.ndarray]],
                      flip: bool | None = None,
                      multi: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Like :meth:`predict_boxes_with_scores` for faces of several images
        in one batch: ``items`` are ``(gray (H, W) uint8, box)`` pairs; returns
        float32 ``(B, K, 2)`` points, each face in pixels of its own image,
        and ``(B, K)`` scores or None. With ``multi`` (:attr:`multi_crop`)
        every box is cut seven ways (:data:`MULTI_CROP`), all in
        one batch, and the points and scores averaged."""
        if len(items) == 0:
            return np.zeros((0, len(self.indices), 2), np.float32), None
        variants = MULTI_CROP if (self.multi_crop if multi is None else multi) else MULTI_CROP[:1]
        boxes = [moved_box(box, *v) for v in variants for _, box in items]
        regions = [T.crop_region(self.scheme.crop, box) for box in boxes]
        batch = torch.stack([T.region_tensor(gray, r, self.input_size, self.mean, self.std)
                             for (gray, _), r in zip(items * len(variants), regions)])
        out, scores = self.backend.run_with_scores(batch)
        if self.flip_test if flip is None else flip:
            perm = list(self.scheme.flip)
            m_out, m_scores = self.backend.run_with_scores(torch.flip(batch, dims=[3]))
            mirrored = m_out[:, perm]
            # The model places points flip_offset input pixels right of mirror symmetry (as its
            # training annotation does): un-mirrored, they must keep that offset, not flip it.
            mirrored[..., 0] = (self.input_size - 1 + 2.0 * self.flip_offset) - mirrored[..., 0]
            out = (out + mirrored) / 2
            if scores is not None and m_scores is not None:
                scores = (scores + m_scores[:, perm]) / 2
        points = np.stack([T.region_to_image(p, r, self.input_size) for p, r in zip(out, regions)])
        if len(variants) > 1:
            n = len(items)
            points = points.reshape(len(variants), n, *points.shape[1:]).mean(axis=0).astype(np.float32)
            if scores is not None:
                scores = scores.reshape(len(variants), n, -1).mean(axis=0).astype(np.float32)
        return points, scores

    @property
    def flip_offset(self) -> float:
        """How far right of mirror symmetry the model puts its points, in input
        pixels (the checkpoint's ``mirror_offset``, measured on training faces
        by ``training/tools/mirror_offset.py``; 0 if absent). ``--flip-test`` keeps it."""
        return float((self.description.get("mirror_offset") or {}).get("input_px", 0.0))

    def positions(self, indices) -> list[int]:
        """Positions of iBUG ``indices`` in this model's output (through the
        scheme's 68-point mapping for schemes such as wflw98)."""
        indices = list(indices)
        if self.scheme.ibug_points is None and self.scheme.ibug68 is not None:
            return [self.scheme.ibug68[i] for i in indices]
        try:
            if self.scheme.ibug_points is None:
                raise ValueError
            return [self.indices.index(i) for i in indices]
        except ValueError:
            raise CheckpointError(f"{self.path}: the model does not predict iBUG points "
                                  f"{min(indices)}-{max(indices)} ({self.scheme.describe()})") from None


def moved_box(box: np.ndarray, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """``box`` ``(x0, y0, x1, y1)`` scaled by ``scale`` about its centre and
    shifted by ``dx``, ``dy`` times its width; float32 ``(4,)``."""
    box = np.asarray(box, np.float32)
    if scale == 1.0 and dx == 0.0 and dy == 0.0:
        return box
    centre = (box[:2] + box[2:]) / 2 + np.float32(box[2] - box[0]) * np.array([dx, dy], np.float32)
    half = (box[2:] - box[:2]) / 2 * np.float32(scale)
    return np.concatenate([centre - half, centre + half]).astype(np.float32)


def refined_boxes(face_model: LandmarkModel, gray: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
    """The second pass's boxes: the landmark box of the face model's first
    prediction in each of ``boxes``. This pass only places the crop, so it
    is never mirrored nor multi-cropped (``flip_test`` and ``multi_crop`` apply to the final pass)."""
    return [landmark_box(p) for p in face_model.predict_boxes(gray, boxes, flip=False, multi=False)]


def refined_crops(face_model: LandmarkModel, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """:func:`refined_boxes` for ``(gray, box)`` pairs of several images, in one batch."""
    return [landmark_box(p) for p in face_model.predict_crops(items, flip=False, multi=False)[0]]
