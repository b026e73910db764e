"""Image grids for the loggers and the run directory: inputs beside reconstructions, samples."""

import numpy as np
import torch


def image_grid(rows: list[torch.Tensor], pad: int = 1) -> torch.Tensor:
    """Rows of images ``(N, C, H, W)`` in [-1, 1] -> one image ``(C, H', W')`` in [0, 1]."""
    rows = [r.detach().float().cpu().clamp(-1, 1).add(1).div(2) for r in rows]
    n, c, h, w = rows[0].shape
    grid = torch.ones(c, len(rows) * (h + pad) + pad, n * (w + pad) + pad)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            grid[:, top : top + h, left : left + w] = image
    return grid


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """A ``(C, H, W)`` image in [0, 1] -> ``(C, H, W)`` uint8 in [0, 255], rounded (NaN -> 0)."""
    image = torch.nan_to_num(image.detach().float().cpu(), nan=0.0)
    return image.clamp(0, 1).mul(255).round().to(torch.uint8)


def log_image(logger, key: str, image: torch.Tensor, step: int) -> None:
    """Log a ``(C, H, W)`` image in [0, 1] to W&B or TensorBoard; other loggers skip it.

    Both get uint8 pixels in [0, 255]: wandb.Image casts a float array to uint8 without scaling
    (a [0, 1] image would come out black), and TensorBoard truncates floats * 255 instead of rounding."""
    pixels = to_uint8(image)
    if hasattr(logger, "log_image"):  # WandbLogger: an (H, W) array is grey (L), (H, W, 3) RGB, (H, W, 4) RGBA
        hwc = pixels.permute(1, 2, 0).numpy()
        logger.log_image(key, images=[np.ascontiguousarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)], step=step)
    elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoardLogger: (C, H, W) uint8
        logger.experiment.add_image(key, pixels, step, dataformats="CHW")


def save_png(image: torch.Tensor, path: str) -> None:
    """Write a ``(C, H, W)`` image in [0, 1] as an 8-bit PNG (grey for one channel), as the loggers get it."""
    from PIL import Image

    hwc = to_uint8(image).permute(1, 2, 0).numpy()
    Image.fromarray(np.ascontiguousarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)).save(path)


def confusion_figure(matrix: torch.Tensor, classes: list[str] | tuple[str, ...]):
    """A matplotlib figure of a confusion matrix ``(true, predicted)`` of counts: a row per true class, a column
    per predicted one, the class names on both axes, each cell's count written in it and its colour the share of
    its row (white 0, dark blue 1), so that a class's errors read the same whatever its size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # drawn into memory: no display, whatever the backend
    from matplotlib.figure import Figure

    counts = matrix.detach().cpu().long()
    shares = counts.float() / counts.sum(1, keepdim=True).clamp(min=1)
    n = len(classes)
    side = 1.6 + 0.45 * n  # inches: room for the names, then a cell per class
    figure = Figure(figsize=(side, side), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(n), labels=list(classes), rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(n), labels=list(classes))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    total, right = int(counts.sum()), int(counts.diag().sum())
    axes.set_title(f"test: {right} of {total} right ({right / max(total, 1):.1%})", fontsize=9)
    if n <= 30:  # beyond, the counts would not fit their cells
        for (i, j), count in np.ndenumerate(counts.numpy()):
            axes.text(j, i, str(count), ha="center", va="center", fontsize=8, color="white" if shares[i, j] > 0.5 else "black")
    figure.tight_layout()
    return figure


def figure_image(figure) -> torch.Tensor:
    """A matplotlib figure drawn as a ``(3, H, W)`` image in [0, 1]: what ``save_png`` and ``log_image`` take."""
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    return torch.from_numpy(rgba[:, :, :3].copy()).permute(2, 0, 1).float() / 255
