"""Image datasets: Fashion-MNIST from IDX files and ImageFolder trees with ADM center-crop.

They return ``(image, label)`` with ``image`` a float (C, H, W) tensor in [-1, 1] (the tokenizer's
input range) and expose ``labels`` (an int64 array of every label, so a token cache can write its index
without decoding images). The token datasets training reads live in :mod:`lpdgen.training.token_datasets`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import IMAGE_EXTENSIONS
from .io import PathLike

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_PAD = 32  # the shipped tokenizer's input side: 28x28 images zero-padded to 32x32 (8x8 codes)
_IDX_UBYTE = 0x08  # IDX type code of unsigned bytes (the only type Fashion-MNIST uses)


# --- Fashion-MNIST ----------------------------------------------------------------------------------


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) of unsigned bytes into an array of its declared shape."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != _IDX_UBYTE:
        raise ValueError(f"{path}: IDX element type 0x{raw[2]:02x} is not unsigned byte")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: truncated or corrupt IDX file: header declares shape {shape} "
            f"({expected} bytes of data) but {len(raw) - header} bytes follow"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzipped if ``path`` ends in ``.gz``), e.g. to make a subset."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer supports uint8 arrays only, got {array.dtype}")
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    raw = header + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def _find_idx(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"Fashion-MNIST file {stem}(.gz) not found in {root}")


def fashion_mnist_image_file(root: PathLike, split: str) -> Path:
    """The IDX image file of ``split`` in ``root`` (gzipped or not); identifies the data in cache keys."""
    if split not in _FASHION_MNIST_FILES:
        raise ValueError(f"Fashion-MNIST split must be one of {sorted(_FASHION_MNIST_FILES)}, got {split!r}")
    return _find_idx(Path(root), _FASHION_MNIST_FILES[split][0])


def load_fashion_mnist(root: PathLike = FASHION_MNIST_DIR, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The ``split`` ("train": 60,000 or "test": 10,000) as (uint8 images (N, 28, 28), int64 labels (N,)).

    ``root`` holds the four standard IDX files, gzipped or not. On Debian/Ubuntu they come with
    ``apt-get install dataset-fashion-mnist`` (the default ``root``).
    """
    if split not in _FASHION_MNIST_FILES:
        raise ValueError(f"Fashion-MNIST split must be one of {sorted(_FASHION_MNIST_FILES)}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST directory {root} does not exist. Install it with `apt-get install dataset-fashion-mnist` "
            f"(files land in {FASHION_MNIST_DIR}) or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from "
            "https://github.com/zalandoresearch/fashion-mnist into one directory and pass it as the root."
        )
    image_stem, label_stem = _FASHION_MNIST_FILES[split]
    images, labels = read_idx(_find_idx(root, image_stem)), read_idx(_find_idx(root, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split} in {root}: images {images.shape} and labels {labels.shape} do not pair up"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"Fashion-MNIST {split} in {root}: label {labels.max()} out of range")
    return images, labels.astype(np.int64)


def image_batch(dataset: Dataset, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(B, C, H, W) images of ``indices``; uses the dataset's vectorised ``batch`` when it has one."""
    if hasattr(dataset, "batch"):
        return dataset.batch(indices)[0]
    return torch.stack([dataset[int(i)][0] for i in indices])


class FashionMNIST(Dataset):
    """Fashion-MNIST as (1, pad_to, pad_to) float images in [-1, 1] with int labels.

    Images are zero-padded (the black background, -1 after scaling) to ``pad_to`` so that a tokenizer
    with 4x downsampling sees 32x32 and yields 8x8 codes. ``images`` ((N, S, S) uint8) and ``labels``
    ((N,) int64) are both tensors, so that indexing them alike gives matching pairs.
    """

    def __init__(self, root: PathLike = FASHION_MNIST_DIR, split: str = "train", pad_to: int = FASHION_MNIST_PAD):
        images, labels = load_fashion_mnist(root, split)
        self.labels = torch.from_numpy(labels)  # (N,) int64
        h, w = images.shape[1:]
        if pad_to < max(h, w):
            raise ValueError(f"pad_to={pad_to} is smaller than the {h}x{w} images")
        top, left = (pad_to - h) // 2, (pad_to - w) // 2
        padded = np.zeros((len(images), pad_to, pad_to), dtype=np.uint8)
        padded[:, top : top + h, left : left + w] = images
        self.images = torch.from_numpy(padded)  # (N, S, S) uint8
        self.classes = FASHION_MNIST_CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].unsqueeze(0).float().div(127.5).sub(1.0), int(self.labels[i])

    def batch(self, indices: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Fast path for in-memory training: (B, 1, S, S) images and (B,) labels."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx].unsqueeze(1).float().div(127.5).sub(1.0), self.labels[idx]


# --- ImageFolder --------------------------------------------------------------------------------------


def find_files(folder: PathLike, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Every file under ``folder`` (recursively) with one of ``extensions`` (case-insensitive), sorted by
    path: the one file order that training datasets and evaluation image sets both use."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in extensions and p.is_file())


def scan_class_folders(
    root: PathLike, extensions: tuple[str, ...]
) -> tuple[list[str], list[tuple[Path, int]], np.ndarray]:
    """``root/<class>/...`` -> (sorted class names, sorted (file, class id) pairs, int64 labels): the
    ImageNet / published-cache convention that class ids follow sorted folder names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"directory {root} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{root} has no class sub-directories (expected root/<class>/<file>)")
    files = [(p, label) for label, name in enumerate(classes) for p in find_files(root / name, extensions)]
    if not files:
        raise ValueError(f"{root} contains no files with extensions {extensions} under its class folders")
    return classes, files, np.array([label for _, label in files], dtype=np.int64)


def center_crop_arr(image, image_size: int):
    """ADM / LlamaGen center crop: halve with a box filter while the short side is >= 2x the target,
    then bicubic-resize the short side to ``image_size`` and crop the center square."""
    from PIL import Image

    while min(*image.size) >= 2 * image_size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = image_size / min(*image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.array(image)
    top, left = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return Image.fromarray(arr[top : top + image_size, left : left + image_size])


class ImageFolder(Dataset):
    """``root/<class>/<image>`` (the ImageNet ``train/`` layout): class ids in sorted folder order,
    images in sorted path order, RGB, ADM center-cropped to ``image_size``."""

    def __init__(self, root: PathLike, image_size: int = 256):
        self.root, self.image_size = Path(root), int(image_size)
        self.classes, self.samples, self.labels = scan_class_folders(root, IMAGE_EXTENSIONS)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as im:
            arr = np.asarray(center_crop_arr(im.convert("RGB"), self.image_size))
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)  # (H, W, 3) -> (3, H, W)
        return x, label


def image_dataset(name: str, root: PathLike | None = None, split: str = "train", image_size: int = 256) -> Dataset:
    """An image dataset by name, for the CLIs: ``fmnist`` (``root`` defaults to the Debian path; 32x32
    padded) or ``imagefolder`` (``root`` required; ``split`` is ignored, point ``root`` at e.g. ``train/``)."""
    if name == "fmnist":
        return FashionMNIST(root or FASHION_MNIST_DIR, split=split, pad_to=FASHION_MNIST_PAD)
    if name == "imagefolder":
        if root is None:
            raise ValueError("the imagefolder dataset needs --data-root")
        return ImageFolder(root, image_size=image_size)
    raise ValueError(f"unknown dataset {name!r}; choose fmnist or imagefolder")
