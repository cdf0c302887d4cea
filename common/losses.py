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


def landmark_loss(model, out, points: torch.Tensor, loss_name: str, offset_radius: int = 0) -> torch.Tensor:
    """Loss of a :class:`~common.model.LandmarkNet` output against ``points``
    ``(B, K, 2)`` in input pixels. For the pip head, ``offset_radius`` 0
    trains the x/y offsets of each point's own cell only (PIPNet); 1 also
    those of its 8 neighbours (offsets from -1 to 2 cells), which the
    decoding averages with the best cell's guess."""
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
    score_loss = F.mse_loss(scores.float().reshape(b, k, g * g), score_t)
    off = offsets.float().reshape(b, 2, k, g * g)  # reshape: channels-last maps too
    preds, targets, valid = [], [], []
    for dy in range(-offset_radius, offset_radius + 1):
        for dx in range(-offset_radius, offset_radius + 1):
            c = cell + torch.tensor([dx, dy], dtype=cell.dtype, device=cell.device)
            valid.append(((c >= 0) & (c <= g - 1)).all(dim=2))
            c = c.clamp(0, g - 1)
            f = (c[..., 1] * g + c[..., 0]).long().unsqueeze(2)
            preds.append(torch.stack([off[:, 0].gather(2, f).squeeze(2), off[:, 1].gather(2, f).squeeze(2)], dim=2))
            targets.append(grid_t - c)
    keep = torch.stack(valid, dim=2)                     # (B, K, cells): cells inside the grid
    pred_off, off_t = torch.stack(preds, dim=2)[keep], torch.stack(targets, dim=2)[keep]
    # Offsets are in cell units; coord_loss expects [0, 1]-like units: a cell is 1/g.
    off_loss = coord_loss(loss_name, pred_off / g, off_t / g) * g
    return PIP_SCORE_WEIGHT * score_loss + off_loss
