"""A token cache: every image of a dataset and its horizontal flip, tokenized once.

Layout of a cache directory (read by :class:`lpdgen.training.token_datasets.TokenDataset`):

- ``index.json``: format, item count, shard size, code grid, codebook size, dtype, the shard list
  (``file``, ``start``, ``count``), the tokenizer config that produced the codes and, when known, where
  that tokenizer is (``tokenizer_source``: a shipped name or an absolute path; ``lpdgen train`` records
  it with the run, so that ``lpdgen sample`` decodes the run's tokens with the same tokenizer);
- ``labels.npy``: (num_items,) int64;
- ``shard_00000.npy`` ...: (count, 2, h*w) codes, ``[:, 0]`` of the image and ``[:, 1]`` of its flip,
  raster order, in the smallest integer dtype that holds the codebook.

Shard ``k`` always covers items ``[k * shard_size, (k + 1) * shard_size)`` and is written atomically
(temporary file, then rename). Progress inside the shard being built is kept too: every
``save_every_s`` seconds, and when the build is interrupted (Ctrl-C), the codes encoded so far are
written atomically to ``shard_k.partial.npy``. A rerun skips finished shards, continues a partial one
from its last whole batch and produces byte-identical files: batches always start at the shard's first
item plus a multiple of the batch size, so every batch holds the same images as in an uninterrupted run.
Under ``torchrun`` rank r of W builds shards r, r + W, ... (from ``RANK`` / ``WORLD_SIZE``); no
process group is needed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..io import PathLike, atomic_write, atomic_write_json
from ..tokenizer import VQTokenizer
from ..utils import get_logger

log = get_logger(__name__)

FORMAT = "lpdgen-token-cache-v1"
INDEX = "index.json"
LABELS = "labels.npy"
DEFAULT_SHARD_SIZE = 50_000  # ~50 MB per shard at 256 tokens in uint16: few files
DEFAULT_SAVE_EVERY_S = 30.0  # progress inside a shard is saved this often: a kill loses at most this much work


def shard_name(k: int) -> str:
    return f"shard_{k:05d}.npy"


def partial_name(shard_file: str) -> str:
    """File of the codes already encoded for an unfinished shard: ``shard_00000.partial.npy``."""
    return shard_file.removesuffix(".npy") + ".partial.npy"


def code_dtype(codebook_size: int) -> np.dtype:
    """Smallest unsigned dtype that holds every code (uint16 for VQ-16's 16384 entries)."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if codebook_size - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"codebook of {codebook_size} entries is too large")


def shard_ranges(num_items: int, shard_size: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` item ranges, one per shard."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    return [(s, min(s + shard_size, num_items)) for s in range(0, num_items, shard_size)]


def dist_rank_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): the arguments if given, else torchrun's ``RANK`` / ``WORLD_SIZE``, else (0, 1)."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else int(rank)
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world size {world_size}")
    return rank, world_size


def _save_npy(array: np.ndarray, path: Path) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a bare temp name
            np.save(f, array)

    atomic_write(path, write)


def _plan(tokenizer: VQTokenizer, dataset: Dataset, shard_size: int, source: str | None) -> dict[str, Any]:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ValueError("the dataset must expose `labels` (every item's class id) to build a token cache")
    if len(labels) != len(dataset) or len(dataset) == 0:
        raise ValueError(f"dataset has {len(dataset)} items but {len(labels)} labels")
    image = dataset[0][0]  # (C, H, W): fixes the code grid before anything is encoded
    ds = tokenizer.config.downsample
    grid = [int(image.shape[-2]) // ds, int(image.shape[-1]) // ds]
    ranges = shard_ranges(len(dataset), shard_size)
    return {
        "format": FORMAT,
        "num_items": len(dataset),
        "shard_size": int(shard_size),
        "grid": grid,
        "codebook_size": tokenizer.config.codebook_size,
        "dtype": code_dtype(tokenizer.config.codebook_size).name,
        "shards": [{"file": shard_name(k), "start": s, "count": e - s} for k, (s, e) in enumerate(ranges)],
        "labels": LABELS,
        "tokenizer": tokenizer.config.to_dict(),
        **({"tokenizer_source": source} if source is not None else {}),
    }


@torch.no_grad()
def encode_with_flips(tokenizer: VQTokenizer, images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images -> (B, 2, h*w) codes of each image and of its horizontal flip (the flipped
    image is encoded: flipping a code grid is not the same as coding a flipped image)."""
    B = images.shape[0]
    codes = tokenizer.encode(torch.cat([images, images.flip(-1)]))  # (2B, h, w)
    return codes.view(2, B, -1).transpose(0, 1)  # (2B, h, w) -> (2, B, h*w) -> (B, 2, h*w)


def build_token_cache(
    tokenizer: VQTokenizer,
    dataset: Dataset,
    out_dir: PathLike,
    *,
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    num_workers: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    save_every_s: float = DEFAULT_SAVE_EVERY_S,
    source: str | None = None,
) -> Path:
    """Tokenize ``dataset`` (items ``(image, label)``, with a ``labels`` attribute) into ``out_dir``;
    ``source`` (where ``tokenizer`` comes from: a shipped name or a path) is recorded in the index.

    Resumable: finished shards are skipped and a partial shard continues from its saved batches
    (saved every ``save_every_s`` seconds and on interruption). A rerun must use the same tokenizer
    config, dataset size and shard size (else ``ValueError``); a different ``batch_size`` is allowed
    but may change codes where two entries tie within floating-point noise. Returns the index path.
    """
    out = Path(out_dir)
    rank, world_size = dist_rank_world(rank, world_size)
    tokenizer.eval()
    plan = _plan(tokenizer, dataset, shard_size, source)
    index_path = out / INDEX
    if index_path.is_file():
        found = json.loads(index_path.read_text())
        keys = set(plan) | set(found)
        if "tokenizer_source" not in plan or "tokenizer_source" not in found:  # unknown on one side: no evidence
            keys.discard("tokenizer_source")
        diff = sorted(k for k in keys if plan.get(k) != found.get(k))
        if diff:
            raise ValueError(f"{out} holds a different token cache (fields {diff} differ); use another directory")
    else:
        _save_npy(np.asarray(dataset.labels, dtype=np.int64), out / LABELS)
        atomic_write_json(plan, index_path)  # written last: an index means labels are in place

    mine = [s for k, s in enumerate(plan["shards"]) if k % world_size == rank]
    for s in mine:  # temporary files of this rank's shards left by a killed run (never another rank's)
        for stale in out.glob(f".{s['file']}.*.tmp"):
            stale.unlink()
    todo = [s for s in mine if not (out / s["file"]).is_file()]
    dtype = np.dtype(plan["dtype"])
    n_tokens = plan["grid"][0] * plan["grid"][1]
    done_items = sum(s["count"] for s in mine) - sum(s["count"] for s in todo)
    log.info("rank %d/%d: %d of my %d shards to build in %s", rank, world_size, len(todo), len(mine), out)
    with tqdm(
        total=sum(s["count"] for s in mine), initial=done_items, desc=f"cache[{rank}]", unit="img", disable=not progress
    ) as bar:  # closed on Ctrl-C too, before the CLI prints its resume hint
        for shard in todo:
            _build_shard(tokenizer, dataset, shard, out, n_tokens, dtype, batch_size, num_workers, save_every_s, bar)
    return index_path


def _build_shard(
    tokenizer: VQTokenizer,
    dataset: Dataset,
    shard: dict,
    out: Path,
    n_tokens: int,
    dtype: np.dtype,
    batch_size: int,
    num_workers: int,
    save_every_s: float,
    bar: tqdm,
) -> None:
    """Encode one shard, continuing its partial file if any; write it, then drop the partial file."""
    codes = np.empty((shard["count"], 2, n_tokens), dtype=dtype)
    partial = out / partial_name(shard["file"])
    pos = _load_partial(partial, codes)
    bar.update(pos)
    subset = Subset(dataset, range(shard["start"] + pos, shard["start"] + shard["count"]))
    saved_at, saved_pos = time.monotonic(), pos
    try:
        for images, _ in DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
            c = encode_with_flips(tokenizer, images.to(tokenizer.device)).cpu().numpy()
            if c.shape[-1] != n_tokens:
                raise ValueError(
                    f"item {shard['start'] + pos}: {c.shape[-1]} codes, expected {n_tokens} "
                    "(images of different sizes?)"
                )
            codes[pos : pos + len(c)] = c
            pos += len(c)
            bar.update(len(c))
            if time.monotonic() - saved_at >= save_every_s and pos < shard["count"]:
                _save_npy(codes[:pos], partial)
                saved_at, saved_pos = time.monotonic(), pos
    except KeyboardInterrupt:
        if pos > saved_pos:
            _save_npy(codes[:pos], partial)  # whole batches only: pos is where the next batch starts
        raise
    _save_npy(codes, out / shard["file"])
    partial.unlink(missing_ok=True)


def _load_partial(path: Path, codes: np.ndarray) -> int:
    """Copy the codes of an unfinished shard saved at ``path`` into ``codes``; returns how many items."""
    if not path.is_file():
        return 0
    done = np.load(path)
    if done.dtype != codes.dtype or done.ndim != 3 or done.shape[1:] != codes.shape[1:] or len(done) > len(codes):
        raise ValueError(
            f"{path}: shape {done.shape} {done.dtype} does not fit its shard {codes.shape} {codes.dtype}; "
            "delete it to redo that shard"
        )
    codes[: len(done)] = done
    return len(done)


def cache_progress(cache_dir: PathLike) -> tuple[int, int]:
    """(items encoded and kept on disk, items in all) of a cache directory, finished or not; (0, 0)
    before its index exists."""
    root = Path(cache_dir)
    index_path = root / INDEX
    if not index_path.is_file():
        return 0, 0
    index = json.loads(index_path.read_text())
    done = 0
    for s in index["shards"]:
        if (root / s["file"]).is_file():
            done += s["count"]
        elif (root / partial_name(s["file"])).is_file():
            done += len(np.load(root / partial_name(s["file"]), mmap_mode="r"))
    return done, index["num_items"]


def open_cache(cache_dir: PathLike) -> tuple[dict[str, Any], list[np.ndarray], np.ndarray]:
    """(index, memory-mapped shards, labels) of a complete cache; clear errors for missing pieces."""
    root = Path(cache_dir)
    index_path = root / INDEX
    if not index_path.is_file():
        raise FileNotFoundError(f"no token cache index at {index_path} (build one with `lpdgen cache`)")
    index = json.loads(index_path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{index_path}: unknown cache format {index.get('format')!r}")
    missing = [s["file"] for s in index["shards"] if not (root / s["file"]).is_file()]
    if missing:
        raise ValueError(
            f"token cache {root} is incomplete: {len(missing)} shard(s) missing ({', '.join(missing[:4])}); "
            "rerun `lpdgen cache` with the same arguments to finish it"
        )
    n_tokens = index["grid"][0] * index["grid"][1]
    shards = []
    for s in index["shards"]:
        arr = np.load(root / s["file"], mmap_mode="r")
        if arr.shape != (s["count"], 2, n_tokens):
            raise ValueError(f"{root / s['file']}: shape {arr.shape}, index says {(s['count'], 2, n_tokens)}")
        shards.append(arr)
    labels = np.load(root / index["labels"])
    if len(labels) != index["num_items"]:
        raise ValueError(f"{root / index['labels']}: {len(labels)} labels for {index['num_items']} items")
    return index, shards, labels
