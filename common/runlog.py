"""Run folders, the per-epoch CSV log and the training-curve plot."""
from __future__ import annotations

import csv
import io
import os
import re

from .outputs import write_atomically
from .plots import new_figure, save_figure

FIELDS = ["epoch", "train_loss", "val_loss", "val_nme", "lr", "epoch_s", "img_per_s", "input_px"]


def new_run_dir(root: str, task: str) -> str:
    """``<root>/<task>/<n>`` with ``n`` one past the highest existing run; never reused."""
    base = os.path.join(root, task)
    os.makedirs(base, exist_ok=True)
    while True:
        nums = [int(d) for d in os.listdir(base) if re.fullmatch(r"\d+", d)]
        path = os.path.join(base, str(max(nums, default=0) + 1))
        try:
            os.makedirs(path)  # fails if a concurrent run took the number
            return path
        except FileExistsError:
            continue


def write_log(path: str, history: list[dict]) -> None:
    """Rewrite the CSV log from the full history (so a resumed run's log is whole)."""
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_atomically(path, f.getvalue().encode())


def write_time_summary(path: str, history: list[dict], sessions: list[dict]) -> None:
    """``time.txt``: how long the run has trained, summed over the sessions
    (processes) that ran it, and each session's machine and epochs. Times
    are sums of epoch times (start-up and data caching not counted); epochs
    of runs saved before sessions were recorded count as "earlier"."""
    by: dict = {}
    for h in history:
        by.setdefault(h.get("session"), []).append(h)
    total = sum(float(h["epoch_s"]) for h in history)
    lines = [f"training time: {total / 3600:.2f} h ({total:.0f} s), epochs 1-{len(history)}, "
             f"over {len(by)} session(s)"]
    known = {s["id"] for s in sessions}
    if any(k not in known for k in by):
        rows = [h for k, v in by.items() if k not in known for h in v]
        lines.append(f"  earlier (not recorded): epochs {rows[0]['epoch']}-{rows[-1]['epoch']}, "
                     f"{sum(float(h['epoch_s']) for h in rows) / 3600:.2f} h")
    for s in sessions:
        rows = by.get(s["id"], [])
        if rows:
            lines.append(f"  {s['id']} on {s['host']}, {s['machine']}: epochs {rows[0]['epoch']}-{rows[-1]['epoch']}, "
                         f"{sum(float(h['epoch_s']) for h in rows) / 3600:.2f} h")
    write_atomically(path, ("\n".join(lines) + "\n").encode())


def plot_curves(path: str, history: list[dict], title: str = "") -> None:
    """Loss curves and validation NME per epoch to a PNG."""
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = new_figure(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], label="train loss")
    a1.plot(ep, [h["val_loss"] for h in history], label="validation loss")
    a1.set_yscale("log")
    a1.set_xlabel("epoch")
    a1.legend()
    a1.grid(alpha=0.3)
    a2.plot(ep, [h["val_nme"] for h in history], color="C2", marker=".")
    a2.set_xlabel("epoch")
    a2.set_ylabel("validation NME (%)")
    a2.grid(alpha=0.3)
    for prev, h in zip(history, history[1:]):  # --progressive-resize: where the training input size changes
        if prev.get("input_px") and h.get("input_px") and h["input_px"] != prev["input_px"]:
            for ax in (a1, a2):
                ax.axvline(h["epoch"] - 0.5, color="0.6", linestyle=":")
            a2.annotate(f"{h['input_px']}px", (h["epoch"] - 0.5, 1), xycoords=("data", "axes fraction"),
                        xytext=(2, -12), textcoords="offset points", fontsize=8, color="0.4")
    if history:
        best = min(history, key=lambda h: h["val_nme"])
        a2.set_title(f"best {best['val_nme']:.2f}% at epoch {best['epoch']}")
    fig.suptitle(title)
    save_figure(fig, path)
