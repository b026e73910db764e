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
