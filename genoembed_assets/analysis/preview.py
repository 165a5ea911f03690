"""A small inline PNG preview in Markdown (Dagster metadata has no image type)."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

__all__ = ["png_preview_markdown"]


def _downscale(path: Path, width: int) -> bytes:
    try:
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.width > width:
                image = image.resize((width, max(1, round(image.height * width / image.width))), Image.LANCZOS)
            buffer = io.BytesIO()
            # an adaptive palette shrinks flat-colour plots several fold
            image.quantize(colors=128).save(buffer, format="PNG", optimize=True)
            return buffer.getvalue()
    except ImportError:  # matplotlib alone can resample too
        import matplotlib.image as mpimg
        from matplotlib.figure import Figure

        pixels = mpimg.imread(path)
        height = max(1, round(pixels.shape[0] * width / pixels.shape[1]))
        fig = Figure(figsize=(width / 100, height / 100), dpi=100)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(pixels, interpolation="antialiased")
        ax.axis("off")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def png_preview_markdown(path: str | os.PathLike, max_width: int = 480, max_bytes: int = 150_000, alt: str | None = None) -> str:
    """Markdown embedding a downscaled copy of the PNG at ``path`` as base64.

    The width is halved until the encoded image is under ``max_bytes`` (the
    Dagster UI stores metadata in the event log, so it must stay small).
    """
    path = Path(path)
    width = max_width
    while True:
        data = _downscale(path, width)
        encoded = base64.b64encode(data).decode("ascii")
        if len(encoded) <= max_bytes or width <= 64:
            break
        width //= 2
    return f"![{alt or path.stem}](data:image/png;base64,{encoded})"
