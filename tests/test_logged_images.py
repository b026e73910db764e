"""The image grids a run logs arrive with their real pixel values: the PNG that W&B (offline) and
TensorBoard store, and the run directory's sample.png, is the grid the task made, scaled to 0-255, not
a black image of 0s and 1s."""

import glob
import os
import struct
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tasks.reconstruction
from datamodules import ImageDataModule

VAE_ON_DIGITS = ["fit", "--config", "configs/vae.yaml", "--data.init_args.source", "digits", "--trainer.max_steps", "2",
                 "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
                 "--trainer.enable_model_summary", "false"]  # fmt: skip
N_IMAGES, SIZE, PAD = 8, 8, 1  # the VAE's grid: 8 digits of 8x8 a row, inputs / reconstructions / samples
ROUNDING = 0.5 + 1e-3  # each stored pixel is the nearest 0-255 value (truncating is off by up to 1)


@pytest.fixture
def logged(monkeypatch) -> list[tuple[str, torch.Tensor, int]]:
    """What the task handed ``log_image`` (key, the (C, H, W) grid in [0, 1], step); the real
    ``log_image`` still logs it."""
    calls, log_image = [], tasks.reconstruction.log_image

    def capture(logger, key: str, image: torch.Tensor, step: int) -> None:
        calls.append((key, image.detach().clone(), step))
        log_image(logger, key, image, step)

    monkeypatch.setattr(tasks.reconstruction, "log_image", capture)
    return calls


def check_pixels(png: bytes, grid: torch.Tensor) -> None:
    """The PNG shows ``grid`` ((C, H, W) in [0, 1]) at 0-255, rounded; a 1-channel grid may be
    stored grey (L) or as three equal channels (RGB); its first row is the first validation digits."""
    pixels = np.asarray(Image.open(BytesIO(png)))
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels  # (H, W, channels)
    expected = grid.permute(1, 2, 0).numpy() * 255  # (H, W, C)
    assert pixels.shape[:2] == expected.shape[:2] == (3 * (SIZE + PAD) + PAD, N_IMAGES * (SIZE + PAD) + PAD), (pixels.shape, expected.shape)
    assert pixels.shape[2] in (expected.shape[2], 3), pixels.shape
    assert pixels.dtype == np.uint8
    diff = np.abs(pixels.astype(np.float64) - expected)  # a grey grid broadcasts over RGB
    assert diff.max() <= ROUNDING, f"logged pixels differ from the grid by up to {diff.max():.2f}/255 (mean {diff.mean():.2f})"
    assert pixels.max() > 200 and pixels.mean() > 30, f"a near-black image: max {pixels.max()}, mean {pixels.mean():.2f}"

    # independently of the captured grid: the top row is the first 8 validation digits, white padding around
    data = ImageDataModule("digits")
    data.setup()
    digits = (data.splits["val"].images[:N_IMAGES, 0].numpy() + 1) / 2 * 255  # (8, 8, 8) at 0-255
    for j, digit in enumerate(digits):
        left = PAD + j * (SIZE + PAD)
        shown = pixels[PAD : PAD + SIZE, left : left + SIZE].astype(np.float64)
        assert np.abs(shown - digit[..., None]).max() <= ROUNDING, f"digit {j} of the top row is not the validation image"
    assert (pixels[0] == 255).all() and (pixels[:, 0] == 255).all()


def wandb_pngs(run_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "files", "media", "images", "**", "*.png"), recursive=True))


def tensorboard_images(log_dir: str) -> list[tuple[str, int, bytes]]:
    """(tag, step, encoded PNG) of each image summary in the event files: TFRecords (length, its
    crc, an ``Event`` protobuf, its crc), read with tensorboardX's protobufs (the test extras') so
    that the tensorboard package itself is not needed."""
    from tensorboardX.proto.event_pb2 import Event

    images = []
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
        data, pos = Path(path).read_bytes(), 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            images += [(v.tag, event.step, v.image.encoded_image_string) for v in event.summary.value if v.HasField("image")]
    return images


def test_wandb_stores_the_grid_at_its_real_pixel_values(cli, logged, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", os.devnull)
    try:
        runs = cli(*VAE_ON_DIGITS, wandb_mode="offline")
    finally:
        import wandb

        wandb.teardown()  # wandb.finish can return before W&B's service has written the files out
    assert [(key, step) for key, _, step in logged] == [("val/reconstructions", 2)]
    pngs = wandb_pngs(os.path.join(runs, "vae"))
    assert len(pngs) == 1, pngs
    check_pixels(Path(pngs[0]).read_bytes(), logged[0][1])
    check_pixels(Path(runs, "vae", "sample.png").read_bytes(), logged[0][1])  # and the run directory has the same


def test_tensorboard_stores_the_grid_at_its_real_pixel_values(cli, logged, tmp_path):
    cli(*VAE_ON_DIGITS, "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", str(tmp_path / "tb"))
    assert [(key, step) for key, _, step in logged] == [("val/reconstructions", 2)]
    images = tensorboard_images(str(tmp_path / "tb" / "lightning_logs" / "version_0"))
    assert [(tag, step) for tag, step, _ in images] == [("val/reconstructions", 2)]
    check_pixels(images[0][2], logged[0][1])


def test_the_run_directory_keeps_the_last_grid_without_any_logger(cli, logged, capsys):
    runs = cli(*VAE_ON_DIGITS, "--trainer.logger", "false")
    sample = os.path.join(runs, "vae", "sample.png")
    assert f"  sample:      {sample}" in capsys.readouterr().out.splitlines()  # the end-of-fit summary names it
    assert [(key, step) for key, _, step in logged] == [("val/reconstructions", 2)]
    check_pixels(Path(sample).read_bytes(), logged[0][1])
