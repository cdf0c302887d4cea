"""Distillation (``train.py --teacher``): a trained model labels every
training crop, at its own input size, and the student learns from a blend
of those points and the annotation.

The teacher sees the clean version of each crop the student sees (same
mirror, rotation and jitter: :func:`common.transforms.train_pipeline`'s
``teacher_view``), so its points are in the student's frame once rescaled.
"""
from __future__ import annotations

import torch

from . import checkpoint as C
from .errors import CheckpointError


class Teacher:
    """A frozen model whose predictions are training targets.

    ``view``: ``(input size, mean, std)`` of the crops it needs;
    :meth:`targets` blends its points, ``weight`` of each, with the
    annotation's."""

    def __init__(self, path: str, indices, student_size: int, weight: float, device: torch.device):
        self.model, ckpt = C.load_model(path)
        if [int(i) for i in ckpt["landmark_indices"]] != [int(i) for i in indices]:
            raise CheckpointError(f"--teacher {path}: predicts {len(ckpt['landmark_indices'])} points, not the "
                                  f"{len(indices)} this run trains")
        self.model = self.model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        norm = ckpt.get("normalisation") or {}
        self.size = int(ckpt["input_size"])
        self.view = (self.size, float(norm.get("mean", 0.5)), float(norm.get("std", 0.25)))
        self.scale = student_size / self.size
        self.weight = weight

    @torch.no_grad()
    def points(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, K, 2)`` float32 points in student input pixels for the
        teacher crops ``x`` ``(B, 1, S_t, S_t)`` (pixel centres map exactly)."""
        return (self.model.predict(x).float() + 0.5) * self.scale - 0.5

    def targets(self, points: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """What the student learns for annotated ``points`` ``(B, K, 2)``
        whose teacher crops are ``x``: ``weight`` of the teacher's points
        and ``1 - weight`` of the annotation's."""
        return torch.lerp(points.float(), self.points(x), self.weight)
