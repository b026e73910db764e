"""Image grids for the loggers: inputs beside reconstructions, samples."""

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


def log_image(logger, key: str, image: torch.Tensor, step: int) -> None:
    """Log a ``(C, H, W)`` image in [0, 1] to W&B or TensorBoard; other loggers skip it."""
    if hasattr(logger, "log_image"):  # WandbLogger
        logger.log_image(key, images=[image.permute(1, 2, 0).numpy()], step=step)
    elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoardLogger
        logger.experiment.add_image(key, image, step)
