"""Helpers for the notebooks: matplotlib / PIL image grids, curves, markdown tables, traversal grids; a plotly
trade-off scatter."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from core.editing import traverse
from core.faces import tensor_to_pil


def to_array(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] (or [1, 3, H, W]) in [-1, 1] -> H x W x 3 floats in [0, 1] for imshow."""
    image = image.detach().float().cpu().reshape(-1, *image.shape[-2:])
    return ((image.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def image_grid(
    rows: Sequence[Sequence[torch.Tensor]], row_labels: Sequence[str] = (), col_labels: Sequence[str] = (),
    size: float = 1.8, title: str | None = None,
) -> Figure:
    """A grid of images, one list per row, with optional row / column labels."""
    n_rows, n_cols = len(rows), max(len(row) for row in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            ax.spines[:].set_visible(False)
            if c < len(row):
                ax.imshow(to_array(row[c]))
            if r == 0 and c < len(col_labels):
                ax.set_title(col_labels[c], fontsize=9)
            if c == 0 and r < len(row_labels):
                ax.set_ylabel(row_labels[r], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def attention_grid(face: torch.Tensor, maps: Sequence[torch.Tensor], styles: Sequence[int],
                   level_names: Sequence[str] = ("coarse", "medium", "fine"), size: float = 1.6) -> Figure:
    """Where style queries look: one row per pyramid level, one column per style index; each cell the face with
    that query's attention map ([n_styles, h, w] per level, e.g. `StyleTransformerEncoder.attention_maps`) over it."""
    fig, axes = plt.subplots(len(maps), len(styles), figsize=(size * len(styles), size * len(maps)), squeeze=False)
    picture = to_array(face)
    for r, level in enumerate(maps):
        for c, style in enumerate(styles):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            heat = torch.nn.functional.interpolate(level[style][None, None].float(), size=picture.shape[:2],
                                                   mode="bilinear")[0, 0]
            ax.imshow(picture)
            ax.imshow(heat.numpy(), cmap="inferno", alpha=0.6)
            if r == 0:
                ax.set_title(f"style {style}", fontsize=9)
            if c == 0:
                ax.set_ylabel(level_names[r], fontsize=9)
    fig.tight_layout()
    return fig


def curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
    title: str | None = None, log: bool = False,
) -> Figure:
    """Line plot of {label: (xs, ys)}."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o" if len(xs) < 20 else None, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "")
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def markdown_table(rows: Mapping[str, Mapping[str, float]], digits: int = 3) -> str:
    """{row: {column: value}} as a markdown table (NaN shown as n/a)."""
    columns = list(dict.fromkeys(key for values in rows.values() for key in values))
    cell = lambda v: "n/a" if isinstance(v, float) and math.isnan(v) else (f"{v:.{digits}f}" if isinstance(
        v, float) else str(v))
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(values.get(c, float("nan"))) for c in columns) + " |"
              for name, values in rows.items()]
    return "\n".join(lines)


@torch.no_grad()
def traversal_grid(generator: torch.nn.Module, directions: Sequence, ws: torch.Tensor, strengths: Sequence[float],
                   side: int = 96) -> Image.Image:
    """One row per direction; per face of `ws` ([N, D]) a block of columns, one per strength; labelled, as a PIL
    image (small enough for a model card: faces drawn at `side` px)."""
    font = ImageFont.load_default(size=13)
    label, gap, top = 120, 8, 20

    def column(block: int, c: int) -> int:
        return label + block * (len(strengths) * side + gap) + c * side

    grid = Image.new("RGB", (column(len(ws), 0), top + len(directions) * side), "white")
    draw = ImageDraw.Draw(grid)
    for block in range(len(ws)):
        for c, strength in enumerate(strengths):
            draw.text((column(block, c) + side // 2, top // 2), f"{strength:+g}", fill="black", font=font, anchor="mm")
    for r, direction in enumerate(directions):
        draw.text((4, top + r * side + side // 2), direction.name, fill="black", font=font, anchor="lm")
        latents = traverse(ws, direction, strengths).flatten(0, 1)
        images = generator.synthesis(latents).unflatten(0, (len(strengths), len(ws)))
        for c in range(len(strengths)):
            for block in range(len(ws)):
                face = tensor_to_pil(images[c, block])
                grid.paste(face.resize((side, side), Image.Resampling.LANCZOS), (column(block, c), top + r * side))
    return grid


class InteractiveFigure:
    """A plotly figure that also carries a static PNG of itself (matplotlib): Jupyter shows the interactive one, a
    viewer without JavaScript (GitHub, nbconvert to PDF) the picture, so no reader meets an empty cell."""

    def __init__(self, figure, png: bytes):
        self.figure, self.png = figure, png

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        import plotly.io as pio

        return {"application/vnd.plotly.v1+json": self.figure.to_plotly_json(),
                "text/html": pio.to_html(self.figure, include_plotlyjs="cdn", full_html=False),
                "image/png": base64.b64encode(self.png).decode()}


def tradeoff_scatter(points: Mapping[str, tuple[float, float]], xlabel: str, ylabel: str,
                     title: str = "") -> InteractiveFigure:
    """A scatter of {method: (x, y)}, one labelled point per method (hover for the values in Jupyter): the
    distortion–editability picture of the e4e paper."""
    import plotly.graph_objects as go

    names = list(points)
    xs, ys = [points[n][0] for n in names], [points[n][1] for n in names]
    figure = go.Figure(go.Scatter(
        x=xs, y=ys, mode="markers+text", text=names, textposition="top center", marker={"size": 12},
        hovertemplate="%{text}: x %{x:.3f}, y %{y:.3f}<extra></extra>"))
    figure.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, width=620, height=420,
                         margin={"l": 60, "r": 20, "t": 50, "b": 50})
    static = Figure(figsize=(6.2, 4.2), dpi=100)
    axes = static.add_subplot()
    axes.scatter(xs, ys, s=60)
    for name, x, y in zip(names, xs, ys, strict=True):
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(0, 7), ha="center")
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.margins(0.15)
    buffer = io.BytesIO()
    static.savefig(buffer, format="png", bbox_inches="tight")
    return InteractiveFigure(figure, buffer.getvalue())
