"""MTCNN face detector (Zhang, Zhang, Li and Qiao, "Joint Face Detection and
Alignment using Multi-task Cascaded Convolutional Networks", 2016): P-Net
scans an image pyramid for 12 x 12 face candidates, R-Net (24 x 24) and
O-Net (48 x 48) re-score and adjust them; O-Net also gives five points
(eyes, nose tip, mouth corners).

The weights (``weights/mtcnn.pt``, 2 MB) are the original authors' networks
as converted to PyTorch by the ``facenet-pytorch`` package (MIT licence,
see ``weights/MTCNN_LICENSE``); ``training/tools/import_mtcnn.py`` rebuilds the file
from that package's wheel. Written here from the paper; only the weights come
from outside.

Boxes are ``(x0, y0, x1, y1)`` floats in pixels of the image given
(continuous corners: a box is ``x1 - x0`` wide); points ``(5, 2)`` ``(x, y)``.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import nn

from . import onnx_cache
from .onnx_cache import cached_session, session_options

CELL = 12      # P-Net's window, pixels of the pyramid level
STRIDE = 2     # P-Net's output step, pixels of the pyramid level
PYRAMID_FACTOR = 0.709  # area ratio 1/2 between levels, as in the paper
THRESHOLDS = (0.6, 0.7, 0.7)  # face probability kept after P-, R- and O-Net


def _normalise(images: np.ndarray) -> np.ndarray:
    """uint8 ``(B, H, W, 3)`` RGB -> contiguous float32 ``(B, 3, H, W)`` in about [-1, 1]."""
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
    x -= 127.5
    x *= 0.0078125
    return x


def _export(net: nn.Module, i: int) -> bytes:
    """One network as an ONNX model (bytes); P-Net with a free image size."""
    import io
    import warnings
    side = (24, 24, 48)[i]
    x = torch.zeros(1, 3, 40, 48) if i == 0 else torch.zeros(2, 3, side, side)
    axes = {"x": {0: "b", 2: "h", 3: "w"}} if i == 0 else {"x": {0: "b"}}
    f = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter (needs no onnx package) is deprecated
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), f, input_names=["x"], dynamic_axes=axes, dynamo=False)
    return f.getvalue()


def _onnx_sessions(nets: list[nn.Module], threads: int) -> list | None:
    """The three networks as ONNX Runtime sessions (exports cached:
    ``common/onnx_cache.py``), or None when onnxruntime or the export is
    unavailable. On a CPU this cuts the detector's time by about a quarter,
    and its threads do not spin while waiting, which matters on a machine
    shared with other work (torch's OpenMP threads do: 2-threaded PyTorch was
    10x slower there)."""
    try:
        opts = session_options(threads)
        return [cached_session(net, f"mtcnn-{NETS[i]}", lambda net=net, i=i: _export(net, i), opts)
                for i, net in enumerate(nets)]
    except Exception:  # no onnxruntime, or an exporter that is gone: PyTorch runs them
        return None


class PNet(nn.Module):
    """Fully convolutional 12 x 12 face/non-face scorer with box offsets."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """24 x 24 crop -> face probability and box offsets."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The converted dense weights expect (W, H, C) flattening order.
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """48 x 48 crop -> face probability, box offsets and five points."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first. Overlap is
    intersection over union (OpenCV's NMSBoxes), or over the smaller box
    (``mode="min"``)."""
    if mode == "union":
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.float64)
        keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(np.float64).tolist(), 0.0, threshold)
        return np.asarray(keep, np.int64).reshape(-1)
    x0, y0, x1, y1 = boxes.T
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-scores)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        ih = np.maximum(0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        order = rest[iw * ih / np.maximum(np.minimum(area[i], area[rest]), 1e-9) <= threshold]
    return np.asarray(keep, np.int64)


def apply_offsets(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each corner by its offset, in units of the box's width/height."""
    wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    return boxes + offsets * np.tile(wh, 2)


def to_square(boxes: np.ndarray) -> np.ndarray:
    """Squares with the same centres, side the longer side of each box."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = np.max(boxes[:, 2:] - boxes[:, :2], axis=1, keepdims=True) / 2
    return np.concatenate([c - half, c + half], 1)


def crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """``(B, size, size, 3)`` uint8 crops of ``boxes`` (rounded to whole
    pixels; parts outside the image are black)."""
    h, w = rgb.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(np.round(boxes).astype(np.int64)):
        bw, bh = x1 - x0, y1 - y0
        if bw < 1 or bh < 1:
            continue
        if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
            patch = rgb[y0:y1, x0:x1]
        else:
            patch = np.zeros((bh, bw, 3), np.uint8)
            sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            if sx1 > sx0 and sy1 > sy0:
                patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


class Mtcnn:
    """The three networks and the cascade that joins them (CPU or GPU).

    ``detect(rgb, min_size)`` -> ``(boxes (N, 4), scores (N,), points (N, 5, 2))``
    for faces from ``min_size`` pixels up (not below P-Net's 12)."""

    def __init__(self, state: dict, device: torch.device | str = "cpu", thresholds=THRESHOLDS,
                 backend: str = "auto"):
        self.device = torch.device(device)
        self.nets = []
        for name, cls in zip(NETS, (PNet, RNet, ONet)):
            net = cls()
            try:
                net.load_state_dict({k: v.float() for k, v in state[name].items()})
            except (KeyError, RuntimeError, AttributeError) as exc:
                raise MtcnnWeightsError(f"the MTCNN weights do not fit {name}: {str(exc).splitlines()[0]}") from None
            self.nets.append(net.eval().to(self.device))
        self.thresholds = tuple(thresholds)
        # backend: "auto" (ONNX Runtime on a CPU when it is installed), "onnx" or "torch".
        self.sessions = None
        if backend != "torch" and self.device.type == "cpu":
            self.sessions = _onnx_sessions(self.nets, torch.get_num_threads())
        self.backend = "onnx" if self.sessions else "torch"

    def _run(self, net, images: np.ndarray):
        x = _normalise(images)
        if self.sessions is not None:
            return self.sessions[self.nets.index(net)].run(None, {"x": x})
        with torch.inference_mode():
            return [o.float().cpu().numpy() for o in net(torch.from_numpy(x).to(self.device))]

    def pyramid_scales(self, height: int, width: int, min_size: float) -> list[float]:
        s, scales = CELL / max(min_size, CELL), []
        while min(height, width) * s >= CELL:
            scales.append(s)
            s *= PYRAMID_FACTOR
        return scales

    def stage1(self, rgb: np.ndarray, min_size: float) -> tuple[np.ndarray, np.ndarray]:
        """P-Net over the pyramid: candidate boxes and scores."""
        h, w = rgb.shape[:2]
        all_boxes, all_scores = [], []
        for s in self.pyramid_scales(h, w, min_size):
            hs, ws = math.ceil(h * s), math.ceil(w * s)
            level = rgb if (hs, ws) == (h, w) else cv2.resize(rgb, (ws, hs), interpolation=cv2.INTER_AREA)
            prob, reg = self._run(self.nets[0], level[None])
            ys, xs = np.nonzero(prob[0] > self.thresholds[0])
            if not len(ys):
                continue
            # Window of each output cell, in pixels of the image given.
            sx, sy = ws / w, hs / h
            cells = np.stack([xs * STRIDE / sx, ys * STRIDE / sy,
                              (xs * STRIDE + CELL) / sx, (ys * STRIDE + CELL) / sy], 1).astype(np.float32)
            boxes = apply_offsets(cells, reg[0][:, ys, xs].T)
            scores = prob[0][ys, xs]
            keep = nms(cells, scores, 0.5)
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
        if not all_boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
        keep = nms(boxes, scores, 0.7)
        return boxes[keep], scores[keep]

    def detect(self, rgb: np.ndarray, min_size: float = 20.0):
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        boxes, _ = self.stage1(rgb, min_size)
        if not len(boxes):
            return empty
        # R-Net: re-score square crops of the candidates.
        boxes = to_square(boxes)
        prob, reg = self._run(self.nets[1], crops(rgb, boxes, 24))
        ok = prob > self.thresholds[1]
        boxes, scores, reg = boxes[ok], prob[ok], reg[ok]
        keep = nms(boxes, scores, 0.7)
        boxes = apply_offsets(boxes[keep], reg[keep])
        if not len(boxes):
            return empty
        # O-Net: final score, box and five points.
        boxes = to_square(boxes)
        prob, reg, pts = self._run(self.nets[2], crops(rgb, boxes, 48))
        ok = prob > self.thresholds[2]
        boxes, scores, reg, pts = boxes[ok], prob[ok], reg[ok], pts[ok]
        if not len(boxes):
            return empty
        wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
        points = boxes[:, None, :2] + np.stack([pts[:, :5], pts[:, 5:]], 2) * wh[:, None]
        boxes = apply_offsets(boxes, reg)
        keep = nms(boxes, scores, 0.7, mode="min")
        return (boxes[keep].astype(np.float32), scores[keep].astype(np.float32),
                points[keep].astype(np.float32))


WEIGHTS_FORMAT = "mtcnn-weights"
NETS = ("pnet", "rnet", "onet")


class MtcnnWeightsError(Exception):
    """A file that is not a readable MTCNN weights file."""


def load_weights(path: str) -> dict:
    """The three state dicts of an MTCNN weights file written by
    ``training/tools/import_mtcnn.py`` (its ``format`` key says what it is)."""
    return onnx_cache.load_weights(path, WEIGHTS_FORMAT, "MTCNN", MtcnnWeightsError)
