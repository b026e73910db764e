"""Image augmentations written with torch ops, applied to a whole batch on its device."""

import torch
import torch.nn.functional as F
from torch import nn


class ImageAugment(nn.Module):
    """SimCLR-style views of images in [-1, 1], each sample drawn independently.

    Args:
        crop_scale: range of the area kept by the random resized crop (1 keeps the whole image).
        flip: random horizontal flips (off for digits, whose mirror images are other symbols).
        brightness, contrast: strength of random brightness shifts and contrast scaling.
        blur_kernel: odd size of a random Gaussian blur (0 turns it off); must fit the image.
        noise_std: standard deviation of added Gaussian noise.
    """

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        flip: bool = False,
        brightness: float = 0.3,
        contrast: float = 0.3,
        blur_kernel: int = 0,
        noise_std: float = 0.05,
    ):
        super().__init__()
        low, high = crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale={crop_scale}: expected 0 < min <= max <= 1")
        if blur_kernel < 0 or (blur_kernel and blur_kernel % 2 == 0):
            raise ValueError(f"blur_kernel={blur_kernel}: expected 0 (off) or an odd size")
        if min(brightness, contrast, noise_std) < 0:
            raise ValueError(f"brightness={brightness}, contrast={contrast}, noise_std={noise_std}: expected values >= 0")
        self.crop_scale, self.flip, self.brightness, self.contrast = crop_scale, flip, brightness, contrast
        self.blur_kernel, self.noise_std = blur_kernel, noise_std

    def check_fits(self, image_shape: tuple[int, int, int]) -> None:
        if self.blur_kernel > min(image_shape[1:]):
            raise ValueError(f"augment blur_kernel={self.blur_kernel} does not fit images of {image_shape[1]}x{image_shape[2]}: expected at most {min(image_shape[1:])}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_fits(tuple(x.shape[1:]))
        n, device = len(x), x.device
        # random resized crop: an affine grid per sample, scale s of the side and a shift inside the image
        side = torch.empty(n, device=device).uniform_(*self.crop_scale).sqrt()
        shift = (torch.rand(n, 2, device=device) * 2 - 1) * (1 - side)[:, None]
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0] = side * (torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0) if self.flip else 1.0)
        theta[:, 1, 1] = side
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        scale = 1 + (torch.rand(n, 1, 1, 1, device=device) * 2 - 1) * self.contrast
        shift = (torch.rand(n, 1, 1, 1, device=device) * 2 - 1) * self.brightness
        x = (x - mean) * scale + mean + shift
        if self.blur_kernel:
            x = self._blur(x)
        return (x + torch.randn_like(x) * self.noise_std).clamp(-1, 1)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        sigma = torch.empty(len(x), 1, device=x.device).uniform_(0.1, 2.0)
        r = torch.arange(self.blur_kernel, device=x.device) - self.blur_kernel // 2
        kernel = torch.exp(-(r[None] ** 2) / (2 * sigma**2))
        kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (N, K), separable
        n, c, h, w = x.shape
        pad = self.blur_kernel // 2
        rows = F.conv2d(F.pad(x.reshape(1, n * c, h, w), (pad, pad, 0, 0), mode="replicate"), kernel.repeat_interleave(c, 0)[:, None, None, :], groups=n * c)
        cols = F.conv2d(F.pad(rows, (0, 0, pad, pad), mode="replicate"), kernel.repeat_interleave(c, 0)[:, None, :, None], groups=n * c)
        return cols.reshape(n, c, h, w)
