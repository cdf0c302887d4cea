"""ONNX export of a landmark checkpoint, and the ONNX Runtime model that
:class:`common.predictor.FaceLandmarker` uses for ``.onnx`` weights.

The exported graph takes the normalised grayscale crop batch ``image``
``(B, 1, S, S)`` float32 (``(pixel / 255 - mean) / std``, batch size free)
and gives ``points`` ``(B, K, 2)`` float32: the decoded ``(x, y)`` in input
pixels, 0-based pixel centres (the head's argmax and gather are part of the
graph). The checkpoint's description (task, landmark indices, head, input
size, normalisation, crop, scores, epoch) travels in the file's
``metadata_props``, one JSON value per key, so the ``.onnx`` file describes
itself as a checkpoint does. ``onnx`` and ``onnxscript`` are needed to
export, ``onnxruntime`` to run; none of them is needed for ``.pt`` weights.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn

from .checkpoint import CheckpointError, load_model
from .device import DeviceError
from .model import LandmarkNet
from .predictor import LandmarkModel

ONNX_FORMAT = "face-landmark-onnx"
ONNX_VERSION = 1
# Checkpoint keys copied into the ONNX metadata (JSON-encoded values).
DESCRIBED = ("task", "landmark_indices", "head", "input_size", "normalisation", "crop", "scores", "epoch",
             "config", "mirror_offset", "averaged_from")
INPUT_NAME, OUTPUT_NAME = "image", "points"


class DecodedPoints(nn.Module):
    """``model.predict`` as a module: ``(B, 1, S, S)`` -> ``(B, K, 2)`` points in input pixels."""

    def __init__(self, model: LandmarkNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict(x)


def onnx_metadata(ckpt: dict, source: str) -> dict[str, str]:
    """The ``metadata_props`` of an export: the checkpoint's description as JSON strings."""
    meta = {"format": ONNX_FORMAT, "version": str(ONNX_VERSION),
            "source": os.path.basename(source),
            "input": f"{INPUT_NAME}: float32 (B, 1, S, S) grayscale crop, (pixel / 255 - mean) / std",
            "output": f"{OUTPUT_NAME}: float32 (B, K, 2) (x, y) in input pixels, 0-based pixel centres"}
    for k in DESCRIBED:
        if k in ckpt:
            meta[k] = json.dumps(ckpt[k])
    return meta


def export_onnx(weights: str, output: str, opset: int = 18) -> dict[str, str]:
    """Export checkpoint ``weights`` to ``output`` (written atomically) with
    a dynamic batch dimension and the description in its metadata; returns
    the metadata. Uses the ``torch.export`` based exporter (``dynamo=True``):
    in our tests the older TorchScript exporter gave wrong points here."""
    try:
        import onnx
    except ImportError:
        raise CheckpointError("exporting to ONNX needs the onnx package (pip install onnx onnxscript)") from None
    model, ckpt = load_model(weights)
    s = int(ckpt["input_size"])
    example = torch.zeros(2, 1, s, s)
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=folder)
    os.close(fd)
    try:
        torch.onnx.export(DecodedPoints(model).eval(), (example,), tmp, dynamo=True, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
        proto = onnx.load(tmp)
        meta = onnx_metadata(ckpt, weights)
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if os.path.exists(tmp + ".data"):
            os.unlink(tmp + ".data")
    return meta


def compare_with_torch(onnx_path: str, weights: str, batch: int = 4, seed: int = 0,
                       tol: float = 1e-3) -> dict:
    """Run the export and the checkpoint on the same random batch.

    Returns ``max_abs`` (largest point difference, input pixels), ``points``,
    ``differ`` (points further apart than ``tol``) and ``ties`` (how many of
    those sit on near-tied score cells of the pip head, where any rounding
    difference may pick the other cell: random input makes such ties common).
    """
    model, _ = load_model(weights)
    sess = OnnxLandmarkModel(onnx_path, None, torch.device("cpu"))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, sess.input_size, sess.input_size, generator=g)
    with torch.inference_mode():
        raw = model(x)
        ref = model.decode(raw).numpy()
    out = sess.run_batch(x)
    dist = np.abs(out - ref).max(axis=2)                               # (B, K)
    differ = dist > tol
    ties = 0
    if differ.any() and model.head == "pip":
        top = raw[0].float().flatten(2).topk(2, dim=2).values.numpy()  # (B, K, 2)
        gap = (top[..., 0] - top[..., 1]) / np.maximum(1.0, np.abs(top[..., 0]))
        ties = int((differ & (gap < 1e-3)).sum())
    return {"max_abs": float(dist.max()), "points": int(dist.size), "differ": int(differ.sum()), "ties": ties}


class OnnxLandmarkModel(LandmarkModel):
    """A ``.onnx`` export run with ONNX Runtime, with the interface of
    :class:`common.predictor.LandmarkModel` (``predict_boxes``, ``positions``,
    ``indices``, ``input_size``); the description comes from the file's
    metadata. ``threads``: ONNX Runtime's intra-op threads, by default
    ``torch.get_num_threads()`` so that one setting governs both backends.
    ``device`` "cuda" needs onnxruntime-gpu's CUDA provider."""

    def __init__(self, path: str, task: str | None, device: torch.device, threads: int | None = None):
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
        desc = {k: json.loads(meta[k]) for k in DESCRIBED if k in meta}
        if "quantization" in meta:
            desc["quantization"] = json.loads(meta["quantization"])
        if task is not None and desc.get("task") != task:
            raise CheckpointError(f"{path}: this model is for the '{desc.get('task')}' task, "
                                  f"but the '{task}' task is needed here")
        self.path, self.task, self.device = path, desc["task"], device
        self.model = None
        self.description = desc
        self.input_size = int(desc["input_size"])
        norm = desc.get("normalisation") or {}
        self.mean, self.std = float(norm.get("mean", 0.5)), float(norm.get("std", 0.25))
        self.indices = [int(i) for i in desc["landmark_indices"]]
        self.scores = desc.get("scores", {})
        self.epoch = desc.get("epoch")
        self._input = self.session.get_inputs()[0].name

    def run_batch(self, batch: torch.Tensor) -> np.ndarray:
        """``(B, 1, S, S)`` normalised float32 -> float32 ``(B, K, 2)`` in input pixels."""
        x = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return self.session.run(None, {self._input: x})[0]
