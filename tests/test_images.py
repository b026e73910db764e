import gzip

import numpy as np
import pytest
import torch

from datamodules import ImageDataModule
from datamodules.images import load_images, read_idx
from tasks.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


def write_idx(path, array: np.ndarray) -> str:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return str(path)


def test_digits_split_deterministically_with_labels_in_minus_one_to_one():
    dm = ImageDataModule("digits", batch_size=16)
    dm.setup()
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"val": 180, "test": 180, "train": 1437}
    assert dm.info.image_shape == (1, 8, 8) and dm.info.num_classes == 10
    batch = next(iter(dm.train_dataloader()))
    x, y = batch.images, batch.labels
    assert x.shape == (16, 1, 8, 8) and x.min() >= -1 and x.max() <= 1 and y.dtype == torch.int64
    again = ImageDataModule("digits")
    again.setup()
    assert torch.equal(again.splits["val"].images, dm.splits["val"].images)


def test_idx_and_npz_files_of_the_user(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (30, 12, 12))
    labels = np.arange(30) % 3
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    x, y = load_images(path)
    assert x.shape == (30, 1, 12, 12) and np.allclose(x * 255, images[:, None]) and y.tolist() == labels.tolist()
    np.savez(tmp_path / "rgb.npz", x=np.random.default_rng(0).random((20, 16, 16, 3)), y=np.arange(20) % 2)
    dm = ImageDataModule(str(tmp_path / "rgb.npz"), batch_size=4)
    assert dm.image_shape == (3, 16, 16) and dm.num_classes == 2


def test_bad_image_files_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="image source 'nowhere.npz': not found"):
        ImageDataModule("nowhere.npz")
    np.savez(tmp_path / "wrong.npz", x=np.zeros((4, 5, 6, 7, 8)))
    with pytest.raises(ValueError, match=r"images of shape \(4, 5, 6, 7, 8\); expected"):
        ImageDataModule(str(tmp_path / "wrong.npz"))
    np.savez(tmp_path / "range.npz", x=np.full((4, 8, 8), 3.5))
    with pytest.raises(ValueError, match=r"dtype float64 in \[3.5, 3.5\]; expected uint8, or floats in \[0, 1\]"):
        ImageDataModule(str(tmp_path / "range.npz"))
    (tmp_path / "bad.idx").write_bytes(b"\x00\x00\x0d\x01" + (4).to_bytes(4, "big") + b"abcd")
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        read_idx(str(tmp_path / "bad.idx"))
    too_big = ImageDataModule("digits", batch_size=5000)
    too_big.setup()
    with pytest.raises(ValueError, match="batch_size=5000 exceeds the 1437 training examples"):
        too_big.train_dataloader()


@pytest.mark.parametrize("size", [8, 28, 32])
def test_encoders_and_decoders_fit_the_image_size(size):
    x = torch.rand(2, 3, size, size) * 2 - 1
    for encoder, decoder in [(ConvEncoder(3, size, out_dim=10), ConvDecoder(3, size, in_dim=6)), (MLPEncoder(3, size, out_dim=10), MLPDecoder(3, size, in_dim=6))]:
        assert encoder(x).shape == (2, 10)
        out = decoder(torch.randn(2, 6))
        assert out.shape == x.shape and out.abs().max() <= 1
    with pytest.raises(ValueError, match="image_size=None: expected a positive int"):
        ConvEncoder(3, None)


def test_augmented_views_differ_and_keep_shape_and_range():
    from tasks.augment import ImageAugment

    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    augment = ImageAugment(flip=True, blur_kernel=5)
    a, b = augment(x), augment(x)
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert not torch.allclose(a, b)
    identity = ImageAugment(crop_scale=(1.0, 1.0), brightness=0, contrast=0, noise_std=0)
    assert torch.allclose(identity(x), x, atol=1e-5)


@pytest.mark.skipif(not __import__("os").path.isdir("/usr/share/datasets/fashion-mnist"), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debians_idx_files():
    dm = ImageDataModule("fashion_mnist")
    assert tuple(dm.images.shape) == (60000, 1, 28, 28) and dm.num_classes == 10
