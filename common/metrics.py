"""Accuracy metrics: NME by the outer eye-corner distance, failure rates, AUC, CED plot, a sheet of faces."""
from __future__ import annotations

import numpy as np

from .plots import new_figure, save_figure


def normaliser(gt: np.ndarray, pair: tuple[int, int] | None) -> np.ndarray:
    """``(F,)`` float64: each face's NME normaliser, the distance between the
    ground-truth points at positions ``pair`` (the outer eye corners 36 and
    45), or, with ``pair`` None (a scheme without eye corners), the box size
    ``sqrt(w * h)`` of the ground truth's points. ``gt``: ``(F, K, 2)``."""
    gt = np.asarray(gt, np.float64)
    if pair is None:
        size = gt.max(axis=1) - gt.min(axis=1)                      # (F, 2): box width, height
        return np.sqrt(size[:, 0] * size[:, 1])
    return np.linalg.norm(gt[:, pair[0]] - gt[:, pair[1]], axis=1)


def nme_per_face(pred: np.ndarray, gt: np.ndarray, pair: tuple[int, int] | None) -> np.ndarray:
    """Mean point-to-point error of each face over its :func:`normaliser`.

    ``pred``, ``gt``: ``(F, K, 2)``; returns ``(F,)`` float64 fractions (0.035 = 3.5%).
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    err = np.linalg.norm(pred - gt, axis=2).mean(axis=1)
    return err / np.maximum(normaliser(gt, pair), 1e-6)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long 1-D arrays (ties
    broken by order; nan when either is constant)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    ra, rb = np.argsort(np.argsort(a)).astype(np.float64), np.argsort(np.argsort(b)).astype(np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def auc(nmes: np.ndarray, threshold: float = 0.08, steps: int = 1000) -> float:
    """Area under the cumulative error curve up to ``threshold``, as a fraction of the maximum."""
    nmes = np.asarray(nmes, np.float64)
    if nmes.size == 0:
        return float("nan")
    xs = np.linspace(0.0, threshold, steps + 1)
    ys = (nmes[None, :] <= xs[:, None]).mean(axis=1)
    return float(np.trapezoid(ys, xs) / threshold) if hasattr(np, "trapezoid") \
        else float(np.trapz(ys, xs) / threshold)


def summarize(nmes: np.ndarray) -> dict:
    """NME mean and median, failure rates at 8% and 10%, AUC at 8% (all in percent), n."""
    nmes = np.asarray(nmes, np.float64)
    if nmes.size == 0:
        return {"nme": float("nan"), "median": float("nan"), "fr8": float("nan"),
                "fr10": float("nan"), "auc8": float("nan"), "n": 0}
    return {"nme": 100 * float(nmes.mean()), "median": 100 * float(np.median(nmes)),
            "fr8": 100 * float((nmes > 0.08).mean()), "fr10": 100 * float((nmes > 0.10).mean()),
            "auc8": 100 * auc(nmes, 0.08), "n": int(nmes.size)}


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = 10000, seed: int = 0) -> dict:
    """Mean of ``b - a`` over the same faces, with a 95% paired bootstrap
    interval (faces resampled with replacement, the pairs kept together) and
    how many faces got better (b < a) or worse (b > a)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_difference needs two equal, non-empty 1-D arrays, got {a.shape} and {b.shape}")
    d = b - a
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": float(d.mean()),
            "low": float(lo), "high": float(hi), "better": int((d < 0).sum()), "worse": int((d > 0).sum()),
            "n": int(d.size)}


def point_drift(a: np.ndarray, b: np.ndarray, norm: np.ndarray) -> dict:
    """How far two models' predictions of the same faces lie apart, with no
    annotation needed (an int8 model against its float one, say). ``a``,
    ``b``: ``(F, K, 2)`` points; ``norm``: ``(F,)`` each face's NME
    normaliser in the same pixels. Per face the mean point distance over the
    normaliser, in percent: its mean, median, 95th percentile and largest
    value; ``point_max``: the largest single point's distance, in percent."""
    a, b, norm = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(norm, np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[0] == 0 or norm.shape != a.shape[:1]:
        raise ValueError(f"point_drift needs two equal (F, K, 2) arrays and (F,) normalisers, got {a.shape}, "
                         f"{b.shape} and {norm.shape}")
    dist = np.linalg.norm(a - b, axis=2) / np.maximum(norm, 1e-6)[:, None] * 100
    face = dist.mean(axis=1)
    return {"mean": float(face.mean()), "median": float(np.median(face)), "p95": float(np.percentile(face, 95)),
            "max": float(face.max()), "point_max": float(dist.max()), "n": int(face.size)}


def summary_line(s: dict, **extra) -> str:
    """Machine-readable one-line summary, e.g. ``NME=3.41 median=3.02 FR8=1.2 ...``."""
    parts = [f"NME={s['nme']:.2f}", f"median={s['median']:.2f}", f"FR8={s['fr8']:.1f}",
             f"FR10={s['fr10']:.1f}", f"AUC8={s['auc8']:.1f}", f"n={s['n']}"]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return " ".join(parts)


def ced_plot(curves: dict[str, np.ndarray], path: str, title: str = "",
             max_error: float = 0.10) -> None:
    """Cumulative error distribution plot (fraction of faces vs NME) to a PNG."""
    fig, ax = new_figure(figsize=(6, 4.5))
    xs = np.linspace(0, max_error, 501)
    for name, nmes in curves.items():
        nmes = np.asarray(nmes)
        ys = (nmes[None, :] <= xs[:, None]).mean(axis=1) if nmes.size else np.zeros_like(xs)
        ax.plot(xs * 100, ys * 100, label=f"{name} (NME {100 * nmes.mean():.2f}%)"
                if nmes.size else name)
    ax.axvline(8, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("NME (% of outer eye-corner distance)")
    ax.set_ylabel("faces (%)")
    ax.set_xlim(0, max_error * 100)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "Cumulative error distribution")
    save_figure(fig, path)


def faces_sheet(tiles: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]], path: str, title: str = "",
                columns: int = 4, margin: float = 0.25) -> None:
    """A PNG of faces in a grid, each cut from its RGB photo around its points
    (plus ``margin`` of the box's side), the annotated points in green and the
    predicted ones in red. ``tiles``: ``(image, annotation (K, 2), prediction
    (K, 2), caption)``."""
    rows = max(1, -(-len(tiles) // columns))
    fig, axes = new_figure(rows, columns, figsize=(3 * columns, 3.2 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image, gt, pred, caption) in zip(axes.ravel(), tiles):
        both = np.concatenate([gt, pred]).astype(np.float64)
        lo, hi = both.min(axis=0), both.max(axis=0)
        pad = margin * float((hi - lo).max())
        x0, y0 = np.maximum(np.floor(lo - pad).astype(int), 0)
        x1, y1 = np.ceil(hi + pad).astype(int)
        ax.imshow(image[y0:y1 + 1, x0:x1 + 1], cmap="gray" if image.ndim == 2 else None)
        for pts, colour in ((gt, "lime"), (pred, "red")):
            ax.scatter(pts[:, 0] - x0, pts[:, 1] - y0, s=4, c=colour, linewidths=0)
        ax.set_title(caption, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
