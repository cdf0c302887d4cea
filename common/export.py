"""ONNX export of a landmark checkpoint (needs the ``onnx`` and ``onnxscript``
packages), and its check against PyTorch (needs ``onnxruntime``). The file's
contract (input, output, metadata) is described in
:mod:`common.landmark_model`, which runs it.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn

from .checkpoint import load_model
from .errors import CheckpointError
from .landmark_model import (DESCRIBED, INPUT_NAME, ONNX_FORMAT, ONNX_VERSION, OUTPUT_NAME, SCORES_NAME,
                             OnnxBackend)
from .model import LandmarkNet


class DecodedPoints(nn.Module):
    """``model.predict`` as a module: ``(B, 1, S, S)`` -> ``(B, K, 2)`` points
    in input pixels, and for the pip head also ``(B, K)`` point scores."""

    def __init__(self, model: LandmarkNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        points, scores = self.model.predict_with_scores(x)
        return points if scores is None else (points, scores)


def onnx_metadata(ckpt: dict, source: str) -> dict[str, str]:
    """The ``metadata_props`` of an export: the checkpoint's description as JSON strings."""
    meta = {"format": ONNX_FORMAT, "version": str(ONNX_VERSION),
            "source": os.path.basename(source),
            "input": f"{INPUT_NAME}: float32 (B, 1, S, S) grayscale crop, (pixel / 255 - mean) / std",
            "output": f"{OUTPUT_NAME}: float32 (B, K, 2) (x, y) in input pixels, 0-based pixel centres"
                      + (f"; {SCORES_NAME}: float32 (B, K) point confidence in [0, 1]"
                         if ckpt.get("head") == "pip" else "")}
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
                          input_names=[INPUT_NAME], verbose=False,
                          output_names=[OUTPUT_NAME] + ([SCORES_NAME] if model.head == "pip" else []),
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
    sess = OnnxBackend(onnx_path, torch.device("cpu"))
    size = int(sess.description["input_size"])
    x = torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        raw = model(x)
        ref = model.decode(raw).numpy()
    out = sess.run(x)
    dist = np.abs(out - ref).max(axis=2)                               # (B, K)
    differ = dist > tol
    ties = 0
    if differ.any() and model.head == "pip":
        top = raw[0].float().flatten(2).topk(2, dim=2).values.numpy()  # (B, K, 2)
        gap = (top[..., 0] - top[..., 1]) / np.maximum(1.0, np.abs(top[..., 0]))
        ties = int((differ & (gap < 1e-3)).sum())
    return {"max_abs": float(dist.max()), "points": int(dist.size), "differ": int(differ.sum()), "ties": ties}
