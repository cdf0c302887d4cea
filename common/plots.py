"""Matplotlib figures for every plot the toolkit writes (training curves,
CED, worst faces, the tools' plots): off-screen, and saved whole or not at
all (:func:`common.outputs.write_atomically`)."""
from __future__ import annotations

import io


def new_figure(rows: int = 1, columns: int = 1, **kwargs):
    """``(fig, axes)`` from ``plt.subplots`` on the off-screen Agg back end
    (no display needed), ``dpi`` 100 unless given."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    kwargs.setdefault("dpi", 100)
    return plt.subplots(rows, columns, **kwargs)


def save_figure(fig, path: str) -> None:
    """Lay out ``fig``, write it to ``path`` (its format from the extension,
    PNG without one) whole or not at all, and close it."""
    import matplotlib.pyplot as plt
    from .outputs import write_atomically
    try:
        fig.tight_layout()
        buf = io.BytesIO()
        ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else "png"
        fig.savefig(buf, format=ext if ext in fig.canvas.get_supported_filetypes() else "png")
    finally:
        plt.close(fig)
    write_atomically(path, buf.getvalue())
