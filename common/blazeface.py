"""BlazeFace face detector (Bazarevsky et al., "BlazeFace: Sub-millisecond
Neural Face Detection on Mobile GPUs", 2019), the short-range model: one
small single-shot network of depthwise-separable blocks that scores 2
anchors per cell of a stride-8 grid and 6 per cell of a stride-16 grid,
each with a box and six points (eyes, nose tip, mouth, ear tragions).

The weights (``weights/blazeface.pt``, 0.2 MB) are Google's MediaPipe
``face_detection_short_range.tflite`` (Apache-2.0, see
``weights/BLAZEFACE_LICENSE``), read from the ``mediapipe`` wheel by
``training/tools/import_blazeface.py``. Written here from the paper and the
model file's graph; only the weights come from outside.

The network was trained on 128 x 128 inputs, but it is fully convolutional
and its boxes are in pixels of its input, so it runs on a whole image at
any size (a multiple of 16, padded): it finds faces of about 20 to 100
pixels in its input. :meth:`BlazeFace.detect` runs it on an image scaled so
that the smallest wanted face is 20 pixels, then on copies 4x smaller until
the image fits 128 pixels, where the largest faces land in that range.

Boxes are ``(x0, y0, x1, y1)`` floats in pixels of the image given
(continuous corners); points ``(6, 2)`` ``(x, y)``.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import onnx_cache
from .onnx_cache import cached_session, session_options

WEIGHTS_FORMAT = "blazeface-weights"
NATIVE = 128          # the training input size, pixels
ALIGN = 16            # the input's sides must be multiples of the coarsest stride
SMALLEST = 20         # smallest face found reliably, pixels of the network's input
LEVEL_STEP = 4.0      # size ratio between detection levels (the faces one level finds span about 5x)
# Face probability kept, chosen with training/tools/tune_detector.py (--threshold 0.5 0.6 0.65 0.7 0.75, faces
# from 40 px) on training faces only (held-out photos and test frames left out). Faces found: 300-W 100% at
# each up to 0.7 (99.6% at 0.75), YouTube-Faces frames 99.8 / 99.4 / 99.1 / 98.8 / 98.1% (MTCNN: 100%,
# 98.2%); unmatched detections per 300-W photo 0.09 / 0.04 / 0.02 / 0.02 / 0.01 (MTCNN 0.05, some photos
# show faces nobody annotated). 0.7 keeps MTCNN's rates with fewer false alarms; MediaPipe's 0.5 also
# finds the flag's stars in the demo portrait (p 0.6).
THRESHOLD = 0.7
NMS_IOU = 0.3         # boxes overlapping more than this are one face (blended, as MediaPipe does)
# (in channels, out channels, stride) of the 16 blocks; the stride-8 head reads
# the output of block 10 (88 channels), the stride-16 head that of block 15.
BLOCKS = ((24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1), (42, 48, 2), (48, 56, 1),
          (56, 64, 1), (64, 72, 1), (72, 80, 1), (80, 88, 1), (88, 96, 2), (96, 96, 1), (96, 96, 1),
          (96, 96, 1), (96, 96, 1))
HEADS = ((8, 2, 10), (16, 6, 15))  # (stride, anchors per cell, block whose output it reads)


class BlazeBlock(nn.Module):
    """Depthwise 3 x 3 then pointwise 1 x 1, added to the input (max-pooled
    when the block halves the size, zero channels appended when it widens),
    then ReLU. Padding follows TensorFlow's "same" rule for even sizes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, cout - cin
        self.dw = nn.Conv2d(cin, cin, 3, stride, padding=1 if stride == 1 else 0, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        if self.stride == 2:
            y = self.pw(self.dw(F.pad(x, (0, 1, 0, 1))))
            x = F.max_pool2d(x, 2)
        else:
            y = self.pw(self.dw(x))
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return F.relu(x + y)


class BlazeFaceNet(nn.Module):
    """``(B, 3, H, W)`` RGB in [-1, 1], ``H`` and ``W`` multiples of 16 ->
    face logits ``(B, N)`` and regressions ``(B, N, 16)`` (box centre offset,
    width, height, six points' offsets; pixels of the input) for the
    ``N = (H/8)(W/8)*2 + (H/16)(W/16)*6`` anchors, in :func:`anchors` order."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 5, 2)
        self.blocks = nn.ModuleList(BlazeBlock(*b) for b in BLOCKS)
        self.cls = nn.ModuleList(nn.Conv2d(BLOCKS[i][1], k, 1) for _, k, i in HEADS)
        self.reg = nn.ModuleList(nn.Conv2d(BLOCKS[i][1], 16 * k, 1) for _, k, i in HEADS)

    def forward(self, x):
        x = F.relu(self.stem(F.pad(x, (1, 2, 1, 2))))
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in [h[2] for h in HEADS]:
                feats.append(x)
        b = x.shape[0]
        logits = torch.cat([c(f).permute(0, 2, 3, 1).reshape(b, -1) for c, f in zip(self.cls, feats)], 1)
        reg = torch.cat([r(f).permute(0, 2, 3, 1).reshape(b, -1, 16) for r, f in zip(self.reg, feats)], 1)
        return logits, reg


def anchors(height: int, width: int) -> np.ndarray:
    """``(N, 2)`` anchor centres ``(x, y)`` in input pixels, in the order
    :class:`BlazeFaceNet` lists its outputs (per head: rows, columns,
    anchors of a cell). All anchors of a cell share its centre: the model's
    boxes are offsets and sizes in pixels, not relative to an anchor size."""
    out = []
    for stride, k, _ in HEADS:
        ys, xs = np.mgrid[0:height // stride, 0:width // stride]
        c = np.stack([xs, ys], -1).reshape(-1, 1, 2).astype(np.float32) * stride + stride / 2
        out.append(np.repeat(c, k, 1).reshape(-1, 2))
    return np.concatenate(out)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray,
                 threshold: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy suppression, best first, that blends each kept box (and its
    points) with the boxes it suppresses, weighted by score: steadier boxes
    than plain NMS for a network that fires on several neighbouring anchors."""
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0) * (y1 - y0)
    left = np.argsort(-scores)
    kb, ks, kp = [], [], []
    while left.size:
        i = left[0]
        iw = np.maximum(0, np.minimum(x1[i], x1[left]) - np.maximum(x0[i], x0[left]))
        ih = np.maximum(0, np.minimum(y1[i], y1[left]) - np.maximum(y0[i], y0[left]))
        overlap = iw * ih / np.maximum(area[i] + area[left] - iw * ih, 1e-9)
        group, left = left[overlap > threshold], left[overlap <= threshold]
        w = scores[group] / scores[group].sum()
        kb.append(w @ boxes[group])
        ks.append(scores[i])
        kp.append(np.tensordot(w, points[group], 1))
    if not kb:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 6, 2), np.float32)
    return np.array(kb, np.float32), np.array(ks, np.float32), np.array(kp, np.float32)


def level_scales(height: int, width: int, step: float = LEVEL_STEP) -> list[float]:
    """Scales of the copies the network runs on: 1, then ``step`` times
    smaller each, down to the one whose longer side fits :data:`NATIVE`."""
    scales = [1.0]
    while max(height, width) * scales[-1] > NATIVE * 1.05:
        scales.append(max(scales[-1] / step, NATIVE / max(height, width)))
    return scales


def _export(net: nn.Module) -> bytes:
    """The network as an ONNX model (bytes) with free batch and image size."""
    import io
    import warnings
    f = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter (needs no onnx package) is deprecated
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 64, 96),), f, input_names=["x"],
                          output_names=["logits", "reg"], dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}},
                          dynamo=False)
    return f.getvalue()


def _onnx_session(net: nn.Module, threads: int):
    """An ONNX Runtime session of the network, its export cached as MTCNN's
    are (``common/onnx_cache.py``); None when onnxruntime or the exporter is
    missing."""
    try:
        return cached_session(net, "blazeface", lambda: _export(net), session_options(threads))
    except Exception:  # no onnxruntime, or an exporter that is gone: PyTorch runs it
        return None


class BlazeFaceWeightsError(Exception):
    """A file that is not a readable BlazeFace weights file."""


def load_weights(path: str) -> dict:
    """The state dict and provenance written by
    ``training/tools/import_blazeface.py`` (its ``format`` key says what it is)."""
    return onnx_cache.load_weights(path, WEIGHTS_FORMAT, "BlazeFace", BlazeFaceWeightsError)


class BlazeFace:
    """The network and the multi-level search around it (CPU or GPU).

    ``detect(rgb)`` -> ``(boxes (N, 4), scores (N,), points (N, 6, 2))`` for
    faces from :data:`SMALLEST` pixels of ``rgb`` up."""

    def __init__(self, state: dict, device: torch.device | str = "cpu", threshold: float = THRESHOLD,
                 backend: str = "auto"):
        self.device = torch.device(device)
        self.net = BlazeFaceNet()
        try:
            self.net.load_state_dict({k: v.float() for k, v in state["net"].items()})
        except (KeyError, RuntimeError, AttributeError) as exc:
            raise BlazeFaceWeightsError(f"the weights do not fit BlazeFace: {str(exc).splitlines()[0]}") from None
        self.net.eval().to(self.device)
        self.threshold = threshold
        # backend: "auto" (ONNX Runtime on a CPU when it is installed), "onnx" or "torch".
        self.session = None
        if backend != "torch" and self.device.type == "cpu":
            self.session = _onnx_session(self.net, torch.get_num_threads())
        self.backend = "onnx" if self.session is not None else "torch"

    def run(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face probabilities ``(N,)`` and regressions ``(N, 16)`` for one
        uint8 RGB image whose sides are multiples of :data:`ALIGN`."""
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
        x *= 1 / 127.5
        x -= 1.0
        if self.session is not None:
            logits, reg = self.session.run(None, {"x": x})
        else:
            with torch.inference_mode():
                logits, reg = [o.float().cpu().numpy() for o in self.net(torch.from_numpy(x).to(self.device))]
        return 1 / (1 + np.exp(-np.clip(logits[0], -80, 80))), reg[0]

    def detect_level(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and points found on ``rgb`` as it is (padded with
        black to multiples of :data:`ALIGN`), before suppression."""
        h, w = rgb.shape[:2]
        ph, pw = -h % ALIGN, -w % ALIGN
        if ph or pw:
            rgb = cv2.copyMakeBorder(rgb, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        prob, reg = self.run(rgb)
        keep = prob > self.threshold
        prob, reg, centres = prob[keep], reg[keep], anchors(h + ph, w + pw)[keep]
        c = centres + reg[:, :2]
        half = reg[:, 2:4] / 2
        points = centres[:, None] + reg[:, 4:].reshape(-1, 6, 2)
        return np.concatenate([c - half, c + half], 1), prob, points

    def detect(self, rgb: np.ndarray, step: float = LEVEL_STEP):
        h, w = rgb.shape[:2]
        found = []
        for s in level_scales(h, w, step):
            level = rgb if s == 1.0 else cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                                                    interpolation=cv2.INTER_AREA)
            boxes, scores, points = self.detect_level(level)
            sx, sy = level.shape[1] / w, level.shape[0] / h
            found.append((boxes / [sx, sy, sx, sy], scores, points / [sx, sy]))
        boxes, scores, points = (np.concatenate(a) for a in zip(*found))
        return weighted_nms(boxes.astype(np.float32), scores, points.astype(np.float32))
