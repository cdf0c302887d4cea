"""A small progress bar for long loops (no extra dependency)."""
from __future__ import annotations

import sys
import time


def _fmt_time(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """``[i/N]`` bar with items/s, time left and free-form fields, on stderr.
    On a terminal it redraws one line; otherwise it prints about ten lines."""

    def __init__(self, total: int, desc: str = "", unit: str = "img", stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.time()
        self.done_items = 0
        self._next_print = 0.0

    def update(self, step: int, items: int, **fields) -> None:
        """``step`` of ``total`` finished, ``items`` processed so far."""
        self.done_items = items
        elapsed = time.time() - self.start
        frac = step / max(self.total, 1)
        if not self.tty and frac < self._next_print and step != self.total:
            return
        self._next_print = frac + 0.1
        rate = items / elapsed if elapsed > 0 else 0.0
        left = elapsed / frac - elapsed if frac > 0 else 0.0
        width = 24
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        extra = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        line = (f"{self.desc} [{bar}] {step}/{self.total} {rate:.1f} {self.unit}/s "
                f"elapsed {_fmt_time(elapsed)} left {_fmt_time(left)} {extra}")
        if self.tty:
            print("\r" + line, end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=self.stream, flush=True)
