"""Training losses for both heads."""
from __future__ import annotations

import torch
import torch.nn.functional as F

COORD_LOSSES = ("mse", "smoothl1", "wing", "l1")
# Weight of the score-map loss against the offset loss (PIPNet's setting).
PIP_SCORE_WEIGHT = 10.0


def wing_loss(pred: torch.Tensor, target: torch.Tensor, w: float = 10.0,
              eps: float = 2.0) -> torch.Tensor:
    """Wing loss (Feng et al. 2018); inputs in percent of the input side."""
    x = (pred - target).abs()
    c = w - w * torch.log(torch.tensor(1.0 + w / eps))
    return torch.where(x < w, w * torch.log1p(x / eps), x - c).mean()


def coord_loss(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distance loss between coordinates expressed in [0, 1] units."""
    if name == "mse":
        return F.mse_loss(pred, target)
    if name == "l1":
        return F.l1_loss(pred, target)
    if name == "smoothl1":
        return F.smooth_l1_loss(pred, target, beta=0.02)
    if name == "wing":
        return wing_loss(pred * 100.0, target * 100.0) / 100.0
    raise ValueError(f"unknown loss {name!r} (want one of {', '.join(COORD_LOSSES)})")


def landmark_loss(model, out, points: torch.Tensor, loss_name: str) -> torch.Tensor:
    """Loss of a :class:`~common.model.LandmarkNet` output against ``points``
    ``(B, K, 2)`` in input pixels."""
    s = model.input_size
    t = (points.float() + 0.5) / s                       # [0, 1] units
    if model.head == "regression":
        return coord_loss(loss_name, out.float(), t.reshape(t.shape[0], -1))
    scores, offsets = out
    b, k, g, _ = scores.shape
    grid_t = t * g
    cell = grid_t.floor().clamp(0, g - 1)                # (B, K, 2)
    flat = (cell[..., 1] * g + cell[..., 0]).long()      # (B, K)
    score_t = torch.zeros(b, k, g * g, device=scores.device)
    score_t.scatter_(2, flat.unsqueeze(2), 1.0)
    score_loss = F.mse_loss(scores.float().view(b, k, g * g), score_t)
    off = offsets.float().view(b, 2, k, g * g)
    ox = off[:, 0].gather(2, flat.unsqueeze(2)).squeeze(2)
    oy = off[:, 1].gather(2, flat.unsqueeze(2)).squeeze(2)
    pred_off = torch.stack([ox, oy], dim=2)
    off_t = grid_t - cell
    # Offsets are in cell units; coord_loss expects [0, 1]-like units: a cell is 1/g.
    off_loss = coord_loss(loss_name, pred_off / g, off_t / g) * g
    return PIP_SCORE_WEIGHT * score_loss + off_loss
