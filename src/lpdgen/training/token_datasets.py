"""Token datasets for training: ``(codes, label)`` items with ``codes`` a (h*w,) LongTensor in raster
order, read from this project's token cache or from the published release's per-image ``.npz`` files.

Horizontal flips are chosen per (seed, epoch, item) by a hash, not by an RNG stream, so any worker
order and any resumed run see the same flips.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import scan_class_folders
from ..io import PathLike
from .token_cache import open_cache

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
    """A token cache written by :func:`lpdgen.training.token_cache.build_token_cache`, memory-mapped.

    Item ``i`` is ``(codes, label)``: the (h*w,) raster-order LongTensor of image ``i`` or, with
    probability ``flip_prob`` (decided by :func:`flip_choice`), of its horizontal flip.
    """

    def __init__(self, cache_dir: PathLike, flip_prob: float = 0.5, seed: int = 0):
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


class TensorTokens:
    """Codes (M, N) and labels (M,) already in memory, read a batch at a time (the trainer's vectorised
    ``batch``). For data made on the fly: synthetic tokens of benchmarks, small test sets."""

    def __init__(self, codes: torch.Tensor, labels: torch.Tensor):
        if codes.dim() != 2 or labels.shape != (codes.shape[0],):
            raise ValueError(f"need codes (M, N) and labels (M,), got {tuple(codes.shape)} and {tuple(labels.shape)}")
        self.codes, self.labels = codes, labels

    def __len__(self) -> int:
        return len(self.codes)

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.codes[indices], self.labels[indices]
