"""ResNet-18 landmark networks with a regression head or a pixel-in-pixel head.

Both take a normalised grayscale batch ``(B, 1, S, S)`` and, through
:meth:`LandmarkNet.decode`, give ``(B, K, 2)`` points in input pixels.

- ``regression`` (the seed's design): global pooling and a linear layer of
  2K outputs, the coordinates divided by the input size.
- ``pip`` (pixel-in-pixel, Jin et al. 2021): layer4 kept at stride 16, so a
  128 px input gives an 8 x 8 grid; per point a score map over the grid plus
  x/y offsets inside each cell. Decoding averages the guesses (cell + offset)
  of the best-scoring cell and its 8 neighbours, weighted by their scores:
  a near tie between two cells then moves the point smoothly instead of
  making it jump (lower error than the best cell alone: weights/README.md,
  *Ablations*).

Style heads (``styles`` > 1, pip only; ``train.py --style-heads``): one more
score-and-offset head per extra annotation style (data set), trained on that
set's faces only, so that sets annotated in different conventions share the
backbone without pulling one head between them. The model predicts style 0
(the first ``--data`` set): ``forward(x)`` and every export use that head;
the others serve training and are left out of released weights.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .errors import InputError

HEADS = ("regression", "pip")


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convolutions with a shortcut (He et al. 2016)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _layer(inplanes: int, planes: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes, 1))


def _backbone(pip: bool) -> nn.Sequential:
    """ResNet-18's feature layers with a 1-channel stem, parameter for
    parameter torchvision's ``resnet18`` (same names and shapes, so weights
    move between the two; tests/test_model_checkpoint.py checks it). Written out here so
    that inference does not import torchvision (a slower start-up).
    For ``pip``, layer4 keeps stride 16 (its first block does not downsample),
    as in PIPNet."""
    stem = [nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64),
            nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
    layers = [_layer(64, 64, 1), _layer(64, 128, 2), _layer(128, 256, 2), _layer(256, 512, 1 if pip else 2)]
    for m in [b for layer in layers for b in layer.modules()]:  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*stem, *layers)


class LandmarkNet(nn.Module):
    """ResNet-18 (1-channel input) with a landmark head."""

    def __init__(self, num_points: int, head: str = "pip", input_size: int = 128, styles: int = 1):
        super().__init__()
        if head not in HEADS:
            raise InputError(f"unknown head {head!r} (want one of {', '.join(HEADS)})")
        if styles < 1 or (styles > 1 and head != "pip"):
            raise InputError(f"style heads need the pip head and at least 1 style, got {styles} with {head!r}")
        self.styles = styles
        if input_size % 16 != 0:
            raise InputError(f"input size must be a multiple of 16, got {input_size}")
        self.num_points, self.head, self.input_size = num_points, head, input_size
        self.features = _backbone(pip=head == "pip")
        if head == "regression":
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 2 * num_points)
        else:
            self.grid = input_size // 16
            self.score = nn.Conv2d(512, num_points, 1)
            self.offset = nn.Conv2d(512, 2 * num_points, 1)
            nn.init.normal_(self.score.weight, std=0.001)
            nn.init.normal_(self.offset.weight, std=0.001)
            nn.init.zeros_(self.score.bias)
            nn.init.zeros_(self.offset.bias)
            # styles 1..S-1: score maps then x and y offsets, like score and offset together
            self.style_heads = nn.ModuleList(nn.Conv2d(512, 3 * num_points, 1) for _ in range(styles - 1))
            for conv in self.style_heads:
                nn.init.normal_(conv.weight, std=0.001)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Raw head outputs: ``(B, 2K)`` coordinates in [0, 1] units for
        regression; ``(scores (B,K,G,G), offsets (B,2K,G,G))`` for pip.
        ``style`` ``(B,)``: each sample's annotation style (default: 0 for all)."""
        f = self.features(x)
        if self.head == "regression":
            return self.fc(torch.flatten(self.pool(f), 1))
        scores, offsets = self.score(f), self.offset(f)
        if style is None or not len(self.style_heads):
            return scores, offsets
        k = self.num_points
        pick = style.view(-1, 1, 1, 1)
        for i, conv in enumerate(self.style_heads, start=1):
            out = conv(f)
            scores = torch.where(pick == i, out[:, :k], scores)
            offsets = torch.where(pick == i, out[:, k:], offsets)
        return scores, offsets

    def decode(self, out) -> torch.Tensor:
        """Head outputs to ``(B, K, 2)`` float32 points in input pixels (pip:
        the score-weighted mean of the best cell's and its neighbours' guesses,
        negative scores counting as zero)."""
        s = self.input_size
        if self.head == "regression":
            return (out.float().reshape(out.shape[0], -1, 2) * s) - 0.5
        scores, offsets = out
        b, k, g, _ = scores.shape
        sc = scores.float().reshape(b, k, g * g)                            # reshape: channels-last maps too
        off = offsets.float().reshape(b, 2, k, g * g)                      # x then y maps
        idx = torch.arange(g * g, device=sc.device)
        col, row = (idx % g).float(), torch.div(idx, g, rounding_mode="floor").float()
        cell = s / g
        xs = (col + off[:, 0]) * cell - 0.5                                # every cell's guess, (B, K, G*G)
        ys = (row + off[:, 1]) * cell - 0.5
        best = sc.argmax(dim=2, keepdim=True)                              # (B, K, 1)
        bc = (best % g).float()
        br = torch.div(best, g, rounding_mode="floor").float()
        near = ((col - bc).abs() <= 1) & ((row - br).abs() <= 1)          # the best cell and its 8 neighbours
        w = torch.where(near, sc.clamp(min=0), torch.zeros_like(sc))
        w = w + (idx == best).float() * 1e-6                               # never all zero
        w = w / w.sum(dim=2, keepdim=True)
        return torch.stack([(w * xs).sum(dim=2), (w * ys).sum(dim=2)], dim=2)

    def point_scores(self, out) -> torch.Tensor | None:
        """Per-point confidence ``(B, K)`` in [0, 1]: the best cell's score
        (pip; trained towards 1 on the point's cell and 0 elsewhere), clipped.
        None for the regression head, which has no scores."""
        if self.head == "regression":
            return None
        scores = out[0].float()
        return scores.flatten(2).amax(dim=2).clamp(0.0, 1.0)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Convenience: ``decode(forward(x))``."""
        return self.decode(self(x))

    def predict_with_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(points (B, K, 2), point_scores (B, K) or None)`` from one forward pass."""
        out = self(x)
        return self.decode(out), self.point_scores(out)


def build_model(num_points: int, head: str = "pip", input_size: int = 128, styles: int = 1) -> LandmarkNet:
    """The network for ``num_points`` landmarks (68 face, 12 eyes)."""
    return LandmarkNet(num_points, head, input_size, styles)
