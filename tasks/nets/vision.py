"""Image encoders and decoders, MLP and convolutional. An encoder maps ``(B, C, H, W)`` to features
``(B, out_dim)``; a decoder maps ``(B, in_dim)`` back to ``(B, C, H, W)`` in [-1, 1]. Channels and
image size left ``None`` are the data's (``from_data``)."""

import math

import torch
from torch import nn

from core.checks import positive


def _downsamplings(image_size: int) -> int:
    """Stride-2 stages from ``image_size`` down to a base of at most 7 (28 -> 14 -> 7, 8 -> 4)."""
    n = 0
    while image_size % 2 == 0 and image_size > 7:
        image_size //= 2
        n += 1
    return n


class MLPEncoder(nn.Module):
    from_data = {"in_channels": "channels", "image_size": "image_size"}

    def __init__(self, in_channels: int | None = None, image_size: int | None = None, hidden: int = 256, out_dim: int = 64):
        super().__init__()
        positive(self, in_channels=in_channels, image_size=image_size, hidden=hidden, out_dim=out_dim)
        n_in = in_channels * image_size**2
        self.out_dim = out_dim
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    from_data = {"out_channels": "channels", "image_size": "image_size"}

    def __init__(self, out_channels: int | None = None, image_size: int | None = None, hidden: int = 256, in_dim: int = 16):
        super().__init__()
        positive(self, out_channels=out_channels, image_size=image_size, hidden=hidden, in_dim=in_dim)
        self.shape = (out_channels, image_size, image_size)
        self.in_dim = in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, math.prod(self.shape)), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


class ConvEncoder(nn.Module):
    """DCGAN-style: 3x3 convolutions, stride 2 to a base of at most 7x7, then a linear layer."""

    from_data = {"in_channels": "channels", "image_size": "image_size"}

    def __init__(self, in_channels: int | None = None, image_size: int | None = None, width: int = 32, out_dim: int = 64, norm: bool = True):
        super().__init__()
        positive(self, in_channels=in_channels, image_size=image_size, width=width, out_dim=out_dim)
        n = _downsamplings(image_size)
        layers, channels = [nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(0.2)], width
        for i in range(n):
            layers += [nn.Conv2d(channels, width * 2 ** (i + 1), 4, stride=2, padding=1)]
            channels = width * 2 ** (i + 1)
            layers += [nn.BatchNorm2d(channels)] if norm else []
            layers += [nn.LeakyReLU(0.2)]
        base = image_size // 2**n
        self.out_dim = out_dim
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * base * base, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """The mirror of ConvEncoder: a linear layer to the base grid, then stride-2 transposed convolutions."""

    from_data = {"out_channels": "channels", "image_size": "image_size"}

    def __init__(self, out_channels: int | None = None, image_size: int | None = None, width: int = 32, in_dim: int = 16):
        super().__init__()
        positive(self, out_channels=out_channels, image_size=image_size, width=width, in_dim=in_dim)
        n = _downsamplings(image_size)
        base, channels = image_size // 2**n, width * 2**n
        self.in_dim = in_dim
        self.stem = nn.Sequential(nn.Linear(in_dim, channels * base * base), nn.Unflatten(1, (channels, base, base)))
        layers = []
        for _ in range(n):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1), nn.BatchNorm2d(channels // 2), nn.ReLU()]
            channels //= 2
        self.net = nn.Sequential(*layers, nn.Conv2d(channels, out_channels, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.stem(z))
