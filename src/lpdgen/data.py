"""Datasets: Fashion-MNIST from IDX files, ImageFolder trees with ADM center-crop, and token datasets.

Image datasets return ``(image, label)`` with ``image`` a float (C, H, W) tensor in [-1, 1] (the
tokenizer's input range) and expose ``labels`` (an int64 array of every label, so a token cache can
write its index without decoding images). Token datasets return ``(codes, label)`` with ``codes`` a
(h*w,) LongTensor in raster order.
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
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
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
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(f"{path}: truncated or corrupt IDX file: header declares shape {shape} "
                         f"({expected} bytes of data) but {len(raw) - header} bytes follow")
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
        raise ValueError(f"Fashion-MNIST {split} in {root}: images {images.shape} and labels {labels.shape} do not pair up")
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
    with 4x downsampling sees 32x32 and yields 8x8 codes.
    """

    def __init__(self, root: PathLike = FASHION_MNIST_DIR, split: str = "train", pad_to: int = FASHION_MNIST_PAD):
        images, self.labels = load_fashion_mnist(root, split)
        h, w = images.shape[1:]
        if pad_to < max(h, w):
            raise ValueError(f"pad_to={pad_to} is smaller than the {h}x{w} images")
        top, left = (pad_to - h) // 2, (pad_to - w) // 2
        padded = np.zeros((len(images), pad_to, pad_to), dtype=np.uint8)
        padded[:, top:top + h, left:left + w] = images
        self.images = torch.from_numpy(padded)  # (N, S, S) uint8
        self.classes = FASHION_MNIST_CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].unsqueeze(0).float().div(127.5).sub(1.0), int(self.labels[i])

    def batch(self, indices: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Fast path for in-memory training: (B, 1, S, S) images and (B,) labels."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx].unsqueeze(1).float().div(127.5).sub(1.0), torch.from_numpy(self.labels)[idx]


# --- ImageFolder --------------------------------------------------------------------------------------


def scan_class_folders(root: PathLike, extensions: tuple[str, ...]) -> tuple[list[str], list[tuple[Path, int]], np.ndarray]:
    """``root/<class>/...`` -> (sorted class names, sorted (file, class id) pairs, int64 labels): the
    ImageNet / published-cache convention that class ids follow sorted folder names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"directory {root} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{root} has no class sub-directories (expected root/<class>/<file>)")
    files = [(p, label) for label, name in enumerate(classes) for p in sorted((root / name).rglob("*"))
             if p.suffix.lower() in extensions and p.is_file()]
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
    return Image.fromarray(arr[top:top + image_size, left:left + image_size])


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



# --- token datasets -----------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One round of the splitmix64 finaliser: a fast, well-mixed 64-bit integer hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def flip_choice(seed: int, epoch: int, index: int, prob: float = 0.5) -> bool:
    """Whether item ``index`` uses its flipped codes in ``epoch``: a pure function of (seed, epoch, index),
    so any worker order and any resumed run make the same choices (no RNG state to save)."""
    h = _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ (epoch & _MASK64)) ^ (index & _MASK64))
    return (h >> 11) * (1.0 / (1 << 53)) < prob


class _FlipTokens(Dataset):
    """Shared flip bookkeeping of the token datasets: ``set_epoch`` and the per-item choice."""

    def __init__(self, flip_prob: float, seed: int):
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.flip_prob, self.seed, self.epoch = float(flip_prob), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh set of flips (call once per epoch, like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def use_flip(self, index: int) -> bool:
        return flip_choice(self.seed, self.epoch, index, self.flip_prob)


class TokenDataset(_FlipTokens):
    """A token cache written by :func:`lpdgen.token_cache.build_token_cache`, memory-mapped.

    Item ``i`` is ``(codes, label)``: the (h*w,) raster-order LongTensor of image ``i`` or, with
    probability ``flip_prob`` (decided by :func:`flip_choice`), of its horizontal flip.
    """

    def __init__(self, cache_dir: PathLike, flip_prob: float = 0.5, seed: int = 0):
        from .token_cache import open_cache

        super().__init__(flip_prob, seed)
        self.index, self.shards, self.labels = open_cache(cache_dir)
        self.starts = np.array([s["start"] for s in self.index["shards"]], dtype=np.int64)
        self.grid: tuple[int, int] = tuple(self.index["grid"])
        self.codebook_size: int = int(self.index["codebook_size"])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        codes = self.shards[k][i - self.starts[k], int(self.use_flip(i))]  # (N,) row of a (count, 2, N) shard
        return torch.from_numpy(codes.astype(np.int64)), int(self.labels[i])

    def batch(self, indices: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectorised items: ((B, h*w) codes, (B,) labels), the same choices as ``__getitem__``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} items")
        flips = np.fromiter((self.use_flip(int(i)) for i in idx), dtype=np.int64, count=idx.size)
        shard = np.searchsorted(self.starts, idx, side="right") - 1
        out = np.empty((idx.size, self.grid[0] * self.grid[1]), dtype=np.int64)
        for k in np.unique(shard):
            rows = shard == k
            out[rows] = self.shards[k][idx[rows] - self.starts[k], flips[rows]]  # (b, N) gathered from (count, 2, N)
        return torch.from_numpy(out), torch.from_numpy(self.labels[idx])


class NpzTokenDataset(_FlipTokens):
    """The per-image cache layout of the published LPD release: ``root/<class>/<name>.npz`` with arrays
    ``indices`` and ``indices_flip``; class ids in sorted folder order, files in sorted order."""

    def __init__(self, root: PathLike, flip_prob: float = 0.5, seed: int = 0):
        super().__init__(flip_prob, seed)
        self.classes, self.files, self.labels = scan_class_folders(root, (".npz",))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        key = "indices_flip" if self.use_flip(i) else "indices"
        with np.load(path) as f:
            if key not in f:
                raise ValueError(f"{path}: no array {key!r} (found {sorted(f.files)})")
            codes = f[key].reshape(-1)  # stored as (h*w,), (1, h*w) or (h, w): raster order either way
        return torch.from_numpy(codes.astype(np.int64)), label


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
