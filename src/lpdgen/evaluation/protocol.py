"""Evaluation under the ADM protocol: sampling to ``.npz`` with per-image seeds, image-set reading,
metric computation against reference statistics or images, and the guidance-scale sweep.

Protocol, made explicit so that numbers reproduce:

- Image ``i`` of a run has class ``i % num_classes`` (any prefix is class-balanced; 50,000 images over
  ImageNet's 1000 classes give 50 each) and its own seed derived from ``(seed, i)`` alone
  (:func:`image_seed`). That seed drives a private ``torch.Generator`` for the image's generation
  order and sampling noise (:class:`lpdgen.pipeline.LPDPipeline`), so an image does not depend on the
  batch size, on the number of processes, or on which process made it.
- Work is cut into batches of consecutive indices; batch ``b`` belongs to rank ``b % world_size``.
  Each finished batch is written atomically as a part file beside the output, so an interrupted run
  resumes where it stopped. When all parts exist they are merged into an ADM-style ``.npz``:
  ``arr_0`` uint8 ``(N, H, W, 3)`` (grayscale replicated, as the ADM evaluator expects) and
  ``arr_1`` int64 ``(N,)`` labels.
- Metrics (:func:`compute_metrics`) read ``.npz`` files or image folders, extract Inception features
  (:mod:`lpdgen.evaluation.inception`) and compare with reference statistics (an ``.npz`` with ``mu``/``sigma``
  such as ADM's) or a reference image set, whose statistics are cached.
"""

from __future__ import annotations

import json
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..data import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_PAD,
    FashionMNIST,
    fashion_mnist_image_file,
    find_files,
)
from ..distributed import barrier
from ..images import IMAGE_EXTENSIONS, float_to_uint8
from ..io import atomic_write_json, save_npz
from ..pipeline import SamplingConfig
from ..rng import image_seeds
from ..utils import eval_mode, get_logger
from .inception import TIMING_IMAGES, FirstUse, announce
from .metrics import (
    FIDStatistics,
    default_cache_dir,
    feature_statistics,
    fid_from_features,
    fid_to_statistics,
    inception_score,
    load_statistics,
    precision_recall,
    save_statistics,
    statistics_cache_path,
)
from .reference import (
    FMNIST_REFERENCE,
    ReferenceName,
    array_sha1,
    load_shipped_statistics,
    parse_reference_name,
    reconstructions,
    state_sha1,
)

log = get_logger(__name__)

GRAY_MODES = ("L", "1", "I;16", "I")  # PIL modes read as one grey channel
PART_RE = re.compile(r"part-(\d{8})-(\d{8})\.npz$")


# --- seeds and labels ---------------------------------------------------------------------------------


def image_labels(indices: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Class of each image index: ``i % num_classes`` (every prefix of a run is class-balanced)."""
    return np.asarray(indices, dtype=np.int64) % int(num_classes)


# --- sampling -----------------------------------------------------------------------------------------


@dataclass
class SampleConfig:
    """What an evaluation sampling run draws; stored beside its parts so a resume cannot mix runs."""

    num_images: int = 50_000
    seed: int = 0  # image i gets lpdgen.rng.image_seed(seed, i)
    num_classes: int = 0  # 0: all of the model's classes
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # steps, guidance, order, tau/rho, ...

    def __post_init__(self) -> None:
        if self.num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {self.num_images}")


def sample_images(pipeline, indices: Sequence[int], config: SampleConfig) -> tuple[np.ndarray, np.ndarray]:
    """Generate the images with the given indices as uint8 ``(B, H, W, 3)``, with their labels ``(B,)``.

    ``pipeline`` is an :class:`lpdgen.pipeline.LPDPipeline`; each image gets its own seed
    (:func:`image_seed`), which drives both its order and its sampling noise through a private
    generator, so the result is the same whatever batch the index is generated in.
    """
    model_classes = pipeline.model.cfg.num_classes
    num_classes = config.num_classes or model_classes
    if num_classes > model_classes:
        raise ValueError(f"num_classes={num_classes} exceeds the model's {model_classes} classes")
    labels = image_labels(indices, num_classes)
    out = pipeline(
        labels.tolist(), **asdict(config.sampling), seeds=image_seeds(config.seed, indices), output_type="codes"
    )
    # Decode one image at a time: batched convolutions round differently with the batch size, which
    # moved a few pixels by one grey level between batch sizes 1 and 8. Codes are discrete and stable.
    tokenizer = pipeline.tokenizer
    with eval_mode(tokenizer), torch.inference_mode():
        images = np.concatenate([float_to_uint8(tokenizer.decode(codes[None])) for codes in out.codes])
    return to_rgb(images), labels


def to_rgb(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W)`` / ``(N, H, W, 1)`` / ``(N, H, W, 3)`` -> ``(N, H, W, 3)``."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected images (N, H, W[, 1|3]), got shape {images.shape}")
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def batch_ranges(num_images: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[tuple[int, int]]:
    """Index ranges ``[start, end)`` of the batches owned by ``rank``: batch ``b`` goes to ``b % world_size``."""
    if batch_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}")
    starts = range(0, num_images, batch_size)
    return [(s, min(s + batch_size, num_images)) for b, s in enumerate(starts) if b % world_size == rank]


def parts_dir(out_path: str | os.PathLike) -> Path:
    """Folder of the finished batches of a run writing ``out_path``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".parts")


def _existing_parts(folder: Path) -> dict[tuple[int, int], Path]:
    """(start, end) -> file of every finished batch in ``folder``."""
    found = {}
    for p in folder.glob("part-*.npz"):
        m = PART_RE.search(p.name)
        if m:
            found[(int(m.group(1)), int(m.group(2)))] = p
    return found


def _check_manifest(folder: Path, manifest: dict) -> None:
    """Write the run's manifest, or check that an existing one (a resumed run) matches it."""
    path = folder / "manifest.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != manifest:
            diff = {k: (old.get(k), v) for k, v in manifest.items() if old.get(k) != v}
            raise ValueError(
                f"{folder} holds parts of a different run (changed: {diff}); "
                "use another output path or delete the folder"
            )
    else:
        atomic_write_json(manifest, path)


def sample_to_npz(
    pipeline,
    out_path: str | os.PathLike,
    config: SampleConfig,
    *,
    batch_size: int = 32,
    rank: int = 0,
    world_size: int = 1,
    png_dir: str | os.PathLike | None = None,
    model_id: str = "",
    progress: bool = True,
) -> Path | None:
    """Generate this rank's share of ``config.num_images`` images, then merge if the run is complete.

    Args:
        pipeline: an :class:`lpdgen.pipeline.LPDPipeline` (model and tokenizer; the settings are ``config``'s).
        out_path: the ``.npz`` to write; finished batches go to ``<stem>.parts/`` (kept for resuming).
        rank, world_size: this process's share (``torchrun``: from the environment, see
            :func:`lpdgen.distributed.init_distributed`). Batches are independent of these: only the split changes.
        png_dir: also write ``<index>.png`` files there after the merge.
        model_id: recorded in the manifest (e.g. the checkpoint path) so a resume cannot mix models.

    Returns:
        ``out_path`` once every part exists (the merge happened in this call), else None.
    """
    out_path = Path(out_path)
    folder = parts_dir(out_path)
    folder.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        _check_manifest(folder, {**asdict(config), "model": model_id, "grid": list(pipeline.model.cfg.grid)})
    done = _existing_parts(folder)
    todo = [r for r in batch_ranges(config.num_images, batch_size, rank, world_size) if not _covered(r, done)]
    with tqdm(
        total=sum(e - s for s, e in todo), desc=f"sampling (rank {rank})", unit="img", disable=not progress
    ) as bar:
        for start, end in todo:
            images, labels = sample_images(pipeline, range(start, end), config)
            save_npz(folder / f"part-{start:08d}-{end:08d}.npz", images=images, labels=labels)
            bar.update(end - start)
    barrier()
    if rank != 0:
        return None
    return merge_parts(out_path, config.num_images, png_dir=png_dir)


def _covered(span: tuple[int, int], parts: dict[tuple[int, int], Path]) -> bool:
    """Whether the union of finished parts covers ``[start, end)`` (parts may come from another batch size)."""
    hit = np.zeros(span[1] - span[0], dtype=bool)
    for s, e in parts:
        lo, hi = max(s, span[0]), min(e, span[1])
        if lo < hi:
            hit[lo - span[0] : hi - span[0]] = True
    return bool(hit.all())


def merge_parts(out_path: str | os.PathLike, num_images: int, png_dir: str | os.PathLike | None = None) -> Path | None:
    """Merge finished parts into the ADM ``.npz`` (``arr_0`` images, ``arr_1`` labels); None if some
    indices are still missing (other ranks not finished)."""
    out_path = Path(out_path)
    parts = _existing_parts(parts_dir(out_path))
    if not _covered((0, num_images), parts):
        log.info("%s: not all parts finished yet; merge later", out_path)
        return None
    images = labels = None
    filled = np.zeros(num_images, dtype=bool)
    for (s, e), p in sorted(parts.items()):
        if s >= num_images or filled[s : min(e, num_images)].all():
            continue
        with np.load(p) as f:
            batch_images, batch_labels = f["images"], f["labels"]
        if images is None:
            images = np.empty((num_images, *batch_images.shape[1:]), dtype=np.uint8)
            labels = np.empty(num_images, dtype=np.int64)
        e = min(e, num_images)
        images[s:e], labels[s:e] = batch_images[: e - s], batch_labels[: e - s]
        filled[s:e] = True
    save_npz(out_path, arr_0=images, arr_1=labels)
    log.info("wrote %s: %d images of shape %s", out_path, num_images, images.shape[1:])
    if png_dir is not None:
        write_png_folder(images, png_dir)
    return out_path


def write_png_folder(images: np.ndarray, folder: str | os.PathLike) -> Path:
    """Write uint8 ``(N, H, W[, 1|3])`` images as ``000000.png``, ... (gray content saved as mode L)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(to_rgb(images)):
        gray = bool((img == img[..., :1]).all())
        Image.fromarray(img[..., 0] if gray else img).save(folder / f"{i:06d}.png")
    return folder


# --- image sets ---------------------------------------------------------------------------------------


@dataclass
class ImageSet:
    """Images from an ADM ``.npz`` (``arr_0``) or a folder, read as uint8 ``(N, H, W, C)`` batches."""

    path: Path
    num: int
    shape: tuple[int, int, int]  # (H, W, C)
    labels: np.ndarray | None = None
    # What was done to the stored images, e.g. "recon-<tokenizer hash>": part of the statistics cache key.
    variant: str = ""
    _array: np.ndarray | None = field(default=None, repr=False)
    _files: list[Path] = field(default_factory=list, repr=False)
    # Applied to every batch as it is read (e.g. tokenizer reconstructions); must treat images independently.
    _transform: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    def batches(self, batch_size: int = 250, first: int = 0) -> Iterator[np.ndarray]:
        """Consecutive batches of ``batch_size`` images; with ``first``, a first batch of that many (a
        quick one to time before a long pass)."""
        starts = [0, *range(first, self.num, batch_size)] if 0 < first < self.num else range(0, self.num, batch_size)
        for start, end in zip(starts, [*starts[1:], self.num]):
            if self._array is not None:
                batch = self._array[start:end]
            else:
                batch = np.stack([_read_image(p, self.shape) for p in self._files[start:end]])
            yield batch if self._transform is None else self._transform(batch)

    def head(self, n: int) -> ImageSet:
        """The first ``n`` images (quick reference statistics)."""
        n = min(int(n), self.num)
        labels = None if self.labels is None else self.labels[:n]
        array = None if self._array is None else self._array[:n]
        return replace(self, num=n, labels=labels, _array=array, _files=self._files[:n])

    def all(self) -> np.ndarray:
        """Every image in one array (small sets)."""
        if self._array is not None and self._transform is None:
            return self._array
        return np.concatenate(list(self.batches()))


def _image_mode(path: Path) -> str:
    """PIL mode from the file header (no pixel decoding)."""
    with Image.open(path) as im:
        return im.mode


def _read_image(path: Path, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """One image as uint8 ``(H, W, C)``: L stays 1 channel, everything else becomes RGB."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L" if im.mode in GRAY_MODES else "RGB"))
    arr = arr[..., None] if arr.ndim == 2 else arr
    if shape is not None and arr.shape[:2] != shape[:2]:
        raise ValueError(
            f"{path}: image is {arr.shape[1]}x{arr.shape[0]}, the others are "
            f"{shape[1]}x{shape[0]} (all images of a set must share one resolution)"
        )
    return to_rgb(arr[None])[0] if shape is not None and shape[2] == 3 and arr.shape[2] == 1 else arr


def read_image_set(path: str | os.PathLike) -> ImageSet:
    """Open an ADM ``.npz`` (``arr_0`` uint8 ``(N, H, W, C)``, optional ``arr_1`` labels) or a folder of
    images (searched recursively, sorted by path; mixed gray/RGB folders are read as RGB)."""
    path = Path(path)
    if path.is_dir():
        files = find_files(path)
        if not files:
            raise ValueError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        with Image.open(files[0]) as im:
            w, h = im.size
        channels = 3 if any(_image_mode(p) not in GRAY_MODES for p in files) else 1
        return ImageSet(path, len(files), (h, w, channels), _files=files)
    if not path.is_file():
        raise FileNotFoundError(f"image set not found: {path}")
    try:
        with np.load(path) as f:
            if "arr_0" not in f.files:
                raise ValueError(f"{path}: no 'arr_0' image array (found {sorted(f.files)})")
            images = f["arr_0"]
            labels = f["arr_1"] if "arr_1" in f.files else None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from e
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise ValueError(f"{path}: arr_0 must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    images = images[..., None] if images.ndim == 3 else images
    return ImageSet(path, len(images), tuple(images.shape[1:]), labels, _array=images)


# --- metrics ------------------------------------------------------------------------------------------


def image_set_features(
    images: ImageSet, extractor, progress: bool = True, first_use: FirstUse | None = None
) -> np.ndarray:
    """Inception features ``(N, 2048)`` of an image set (``first_use``: announce a long pass, see
    :meth:`lpdgen.evaluation.inception.InceptionFeatures.extract`)."""
    batches = images.batches(first=TIMING_IMAGES if first_use is not None else 0)
    return extractor.features(
        batches, total=images.num, desc=f"features {images.path.name}", progress=progress, first_use=first_use
    )


def fashion_mnist_image_set(root: str | os.PathLike | None = None, split: str = "test") -> ImageSet:
    """A Fashion-MNIST split as uint8 ``(N, 32, 32, 1)``, zero-padded exactly as the tokenizer (and so
    every generated image) sees it; its path is the IDX image file, which keys the statistics cache."""
    root = root or FASHION_MNIST_DIR
    data = FashionMNIST(root, split=split, pad_to=FASHION_MNIST_PAD)
    images = data.images.numpy()[..., None]  # (N, S, S) -> (N, S, S, 1)
    return ImageSet(
        fashion_mnist_image_file(root, split), len(images), tuple(images.shape[1:]), data.labels.numpy(), _array=images
    )


@dataclass
class NamedReference:
    """A named reference's images and what identifies them against shipped statistics."""

    name: ReferenceName
    images: ImageSet
    source_sha1: str  # array_sha1 of the padded test images
    tokenizer_sha1: str  # "" for the test split itself


def named_reference_images(name: ReferenceName, data_root: str | os.PathLike | None = None) -> NamedReference:
    """The images of a named reference, with the hashes that say whether shipped statistics fit them.

    Reconstructions are made lazily, batch by batch, as the images are read (so only a pass that
    really needs pixels pays for them); each image is encoded and decoded alone, so its pixels do not
    depend on how the set is batched.
    """
    test = fashion_mnist_image_set(data_root, "test")
    source_sha1 = array_sha1(test.all())
    if name.tokenizer is None:
        return NamedReference(name, test, source_sha1, "")
    from ..tokenizer import load_tokenizer

    tokenizer = load_tokenizer(name.tokenizer)
    sha1 = state_sha1(tokenizer)
    recon = replace(test, variant=f"recon-{sha1[:16]}", _transform=lambda batch: reconstructions(tokenizer, batch))
    return NamedReference(name, recon, source_sha1, sha1)


def open_reference_images(reference: str | os.PathLike, data_root: str | os.PathLike | None = None) -> ImageSet:
    """The images of a reference given by name (``fmnist``, ``fmnist-recon[:TOKENIZER]``, see
    :mod:`lpdgen.evaluation.reference`) or path (an ``.npz`` with ``arr_0``, or a folder)."""
    name = parse_reference_name(reference)
    return read_image_set(reference) if name is None else named_reference_images(name, data_root).images


def _npz_array_shape(path: Path, key: str) -> tuple[int, ...] | None:
    """Shape of array ``key`` in an ``.npz`` from its header alone (ADM reference batches are GBs)."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return tuple(read(f)[0])
    except KeyError:
        return None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from e


def reference_resolution(
    reference: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> tuple[int, int] | None:
    """(H, W) of a reference's images without reading pixels or features; None when unknown (ADM
    statistics carry no images)."""
    if parse_reference_name(reference) is not None:
        return FASHION_MNIST_PAD, FASHION_MNIST_PAD
    path = Path(reference)
    if path.is_dir():
        return read_image_set(path).shape[:2]
    if not path.is_file():
        raise FileNotFoundError(
            f"reference not found: {path} (give a statistics .npz, an image .npz or folder, "
            f"'{FMNIST_REFERENCE}' or 'fmnist-recon')"
        )
    images = _npz_array_shape(path, "arr_0")
    if images is not None:
        return tuple(images[1:3])
    if _npz_array_shape(path, "image_shape") is not None:
        with np.load(path) as f:
            return tuple(int(v) for v in f["image_shape"][:2])
    return None


def check_resolution(
    samples: ImageSet, reference: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> None:
    """Raise ``ValueError`` when samples and reference images differ in resolution: both would be resized
    to 299 anyway, but the protocol compares like with like. Cheap: runs before any feature extraction."""
    ref = reference_resolution(reference, data_root)
    if ref is not None and tuple(ref) != tuple(samples.shape[:2]):
        raise ValueError(
            f"resolution mismatch: samples are {samples.shape[1]}x{samples.shape[0]}, reference "
            f"images are {ref[1]}x{ref[0]} (pass allow_resolution_mismatch / "
            "--allow-resolution-mismatch to compare anyway)"
        )


def reference_statistics(
    reference: str | os.PathLike,
    extractor,
    *,
    cache_dir: str | os.PathLike | None = None,
    need_features: bool = False,
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
) -> tuple[FIDStatistics, np.ndarray | None, ImageSet | None]:
    """Statistics (and features when available) of a reference: a name (``fmnist``,
    ``fmnist-recon[:TOKENIZER]``: shipped statistics when they fit the network, see
    :func:`named_reference_statistics`), an ``.npz`` with ``mu``/``sigma`` (used as is, e.g. ADM's; when it
    also holds ``arr_0`` images and ``need_features``, features for precision/recall come from those
    images), or an image set (``.npz`` or folder) whose statistics and features are computed once and
    cached under ``cache_dir``.

    Returns ``(statistics, features or None, the reference's ImageSet or None)``.
    """
    name = parse_reference_name(reference)
    if name is not None:
        return named_reference_statistics(
            name, extractor, cache_dir=cache_dir, need_features=need_features, progress=progress, data_root=data_root
        )
    path = Path(reference)
    if path.is_file() and path.suffix == ".npz":
        with np.load(path) as f:
            has_stats, has_images = "mu" in f.files, "arr_0" in f.files
        if has_stats:
            stats, features = load_statistics(path)
            if need_features and features is None and has_images:
                _, features, images = image_set_statistics(read_image_set(path), extractor, cache_dir, progress)
                return stats, features, images
            return stats, features, None
    return image_set_statistics(read_image_set(path), extractor, cache_dir, progress)


def named_reference_statistics(
    name: ReferenceName,
    extractor,
    *,
    cache_dir: str | os.PathLike | None = None,
    need_features: bool = False,
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
) -> tuple[FIDStatistics, np.ndarray | None, ImageSet]:
    """Inception statistics of a named reference, cheapest source first: the cache of an earlier
    full pass (it has features too), then the shipped statistics unless ``need_features`` (they carry
    none), then a full pass over the images (announced, then cached). Shipped statistics made with
    another Inception file or tokenizer than the ones in use are not used (one line says so)."""
    ref = named_reference_images(name, data_root)
    cache = image_set_cache_path(ref.images, extractor.sha1, cache_dir)
    if not cache.is_file() and not need_features:
        shipped = shipped_statistics(ref, "inception", extractor.sha1)
        if shipped is not None:
            return shipped, None, ref.images
    return image_set_statistics(ref.images, extractor, cache_dir, progress, label=name.name)


def image_set_cache_path(
    images: ImageSet, network_sha1: str, cache_dir: str | os.PathLike | None = None, kind: str = ""
) -> Path:
    """Where an image set's statistics (and features) are cached: keyed by the set's files, its
    resolution, what was done to it (``variant``) and the hash of the feature network; ``kind``
    (e.g. ``"classifier"``) starts the name of other networks' files."""
    cache = statistics_cache_path(cache_dir or default_cache_dir(), images.path, network_sha1)
    prefix = "x".join(map(str, images.shape)) + (f"-{images.variant}" if images.variant else "")
    return cache.with_name(f"{kind + '-' if kind else ''}{prefix}-{cache.name}")


def image_set_statistics(
    images: ImageSet, extractor, cache_dir: str | os.PathLike | None = None, progress: bool = True, label: str = ""
) -> tuple[FIDStatistics, np.ndarray, ImageSet]:
    """Statistics and features of a whole image set, through the cache (:func:`image_set_cache_path`).
    A long first pass is announced (``label`` names the set in that line, default its path)."""
    cache = image_set_cache_path(images, extractor.sha1, cache_dir)
    if cache.is_file():
        log.info("reference statistics from cache %s", cache)
        stats, features = load_statistics(cache)
        return stats, features, images
    first_use = FirstUse(f"Inception features of the reference {label or images.path}", f"cached in {cache} afterwards")
    features = image_set_features(images, extractor, progress, first_use=first_use)
    stats = feature_statistics(features)
    save_statistics(cache, stats, features, image_shape=images.shape)
    return stats, features, images


def shipped_statistics(ref: NamedReference, network: str, network_sha1: str) -> FIDStatistics | None:
    """The shipped ``network`` (``"inception"`` or ``"classifier"``) statistics of a named reference if
    they were made by a network with hash ``network_sha1`` from these very images (same test images,
    same tokenizer); else None, with one line saying why when a file exists but does not fit."""
    shipped = load_shipped_statistics(ref.name)
    if shipped is None:
        return None
    made_with = shipped.inception_sha1 if network == "inception" else shipped.classifier_sha1
    mismatch = None
    if made_with != network_sha1:
        mismatch = f"the {network} network of SHA1 {made_with}, this one is {network_sha1}"
    elif shipped.source_sha1 != ref.source_sha1:
        mismatch = f"other test images (SHA1 {shipped.source_sha1}, these are {ref.source_sha1})"
    elif shipped.tokenizer_sha1 != ref.tokenizer_sha1:
        mismatch = f"a tokenizer of SHA1 {shipped.tokenizer_sha1}, {ref.name.tokenizer!r} is {ref.tokenizer_sha1}"
    if mismatch:
        log.warning(
            "shipped %s statistics of %s were made with %s: computing them from the images instead",
            network,
            ref.name.name,
            mismatch,
        )
        return None
    log.info("%s statistics of %s from %s (made with this %s)", network, ref.name.name, shipped.path.name, network)
    return shipped.inception if network == "inception" else shipped.classifier


def reference_classifier_statistics(
    reference: str | os.PathLike,
    classifier,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> FIDStatistics | None:
    """Statistics of ``classifier``'s penultimate features on a named reference: shipped when they
    were made by this classifier, else computed from the images (announced when long, e.g. with
    reconstructions) and cached under ``cache_dir``; None for other references, whose images need not
    be Fashion-MNIST-sized."""
    name = parse_reference_name(reference)
    if name is None:
        return None
    ref = named_reference_images(name, data_root)
    classifier_sha1 = state_sha1(classifier)
    shipped = shipped_statistics(ref, "classifier", classifier_sha1)
    if shipped is not None:
        return shipped
    images = ref.images
    cache = image_set_cache_path(images, classifier_sha1, cache_dir, kind="classifier")
    if cache.is_file():
        return load_statistics(cache)[0]
    t0 = time.perf_counter()
    batches = images.batches(first=TIMING_IMAGES)
    first = next(batches)
    parts = [classifier.penultimate(first)]
    what = FirstUse(f"classifier features of the reference {name.name}", f"cached in {cache} afterwards")
    announce(what, images.num, (time.perf_counter() - t0) / len(first), len(first))
    parts += [classifier.penultimate(b) for b in batches]
    stats = feature_statistics(np.concatenate(parts))
    save_statistics(cache, stats, image_shape=images.shape)
    return stats


def compute_metrics(
    samples: str | os.PathLike,
    reference: str | os.PathLike,
    extractor,
    *,
    cache_dir: str | os.PathLike | None = None,
    with_precision_recall: bool | None = True,
    classifier=None,
    allow_resolution_mismatch: bool = False,
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
) -> dict:
    """FID (and precision/recall, Inception Score, classifier accuracy where possible) of a sample set.

    Args:
        samples: ``.npz`` (``arr_0``, optional ``arr_1`` labels) or image folder.
        reference: ``.npz`` with ``mu``/``sigma`` (e.g. ADM's ImageNet statistics), an image set, or a
            name: ``fmnist`` (the Fashion-MNIST test split in ``data_root``, padded to 32x32) or
            ``fmnist-recon[:TOKENIZER]`` (its reconstructions), which use shipped statistics.
        extractor: an :class:`lpdgen.evaluation.inception.InceptionFeatures`.
        with_precision_recall: True: always (computing the reference's features if only statistics
            are at hand: for ``fmnist`` a long first pass, then cached); None: only when the
            reference's features are at hand; False: never.
        classifier: optional :class:`lpdgen.evaluation.classifier.FMNISTClassifier`; with labels in the samples it
            adds class accuracy, always its Inception-Score analogue ("classifier IS"), and against a
            named reference the Frechet distance in its penultimate features (``classifier_fd``).
        allow_resolution_mismatch: compare image sets of different resolutions (both are resized to
            299 anyway, but the protocol compares like with like, so this is an error by default,
            raised before any features are extracted).

    Returns:
        A dict with ``fid``, ``num_samples``, ``num_reference`` and, where computed, ``precision``,
        ``recall``, ``inception_score``/``inception_score_std``, ``classifier_accuracy``,
        ``classifier_is``, ``classifier_fd``.
    """
    sample_set = read_image_set(samples)
    if not allow_resolution_mismatch:
        check_resolution(sample_set, reference, data_root)
    ref_stats, ref_features, _ = reference_statistics(
        reference,
        extractor,
        cache_dir=cache_dir,
        need_features=bool(with_precision_recall),
        progress=progress,
        data_root=data_root,
    )
    features, logits = extractor.extract(
        sample_set.batches(), total=sample_set.num, desc=f"features {sample_set.path.name}", progress=progress
    )
    if features.shape[1] != ref_stats.dim:
        raise ValueError(
            f"reference statistics have dimension {ref_stats.dim}, the feature network gives {features.shape[1]}"
        )
    small = ref_features is not None and min(len(features), len(ref_features)) <= ref_stats.dim
    value = fid_from_features(features, ref_features) if small else fid_to_statistics(features, ref_stats)
    result: dict = {"fid": value, "num_samples": sample_set.num, "num_reference": ref_stats.num}
    if ref_features is not None and with_precision_recall is not False:
        result["precision"], result["recall"] = precision_recall(ref_features, features)
    elif with_precision_recall:
        log.warning("precision/recall skipped: the reference has statistics but no images/features")
    elif with_precision_recall is None:
        log.info(
            "precision/recall skipped: the reference %s comes as statistics without features "
            "(--precision-recall computes them: a long pass, for a named reference once, then cached)",
            reference,
        )
    if logits is not None:
        result["inception_score"], result["inception_score_std"] = inception_score(logits, splits=min(10, len(logits)))
    if classifier is not None:
        result.update(
            classifier_metrics(
                classifier, sample_set, reference_classifier_statistics(reference, classifier, data_root, cache_dir)
            )
        )
    return result


def classifier_metrics(classifier, images: ImageSet, reference: FIDStatistics | None = None) -> dict:
    """Class accuracy (if the set has labels), the classifier's Inception-Score analogue, and with
    ``reference`` statistics the Frechet distance in the classifier's penultimate features."""
    logits = torch.cat([classifier.logits(torch.from_numpy(b)) for b in images.batches()])
    out = {}
    out["classifier_is"], _ = inception_score(logits, splits=min(10, len(logits)))
    if images.labels is not None:
        out["classifier_accuracy"] = float((logits.argmax(1).numpy() == images.labels).mean())
    if reference is not None:
        features = np.concatenate([classifier.penultimate(b) for b in images.batches()])
        out["classifier_fd"] = fid_to_statistics(features, reference)
    return out


# --- guidance sweep -----------------------------------------------------------------------------------


def cfg_search(
    pipeline,
    scales: Sequence[float],
    config: SampleConfig,
    out_dir: str | os.PathLike,
    reference: str | os.PathLike,
    extractor,
    *,
    batch_size: int = 32,
    rank: int = 0,
    world_size: int = 1,
    cache_dir: str | os.PathLike | None = None,
    model_id: str = "",
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
) -> list[dict]:
    """FID for each guidance scale on ``config.num_images`` samples (keep it small: the sweep only
    ranks scales; rerun the best at full size). Samples go to ``out_dir/cfg-<s>.npz`` (resumable).
    Returns one row per scale, ``{"cfg", "fid", ...}``, in the order given; the best has the lowest FID."""
    rows = []
    for scale in scales:
        run = replace(config, sampling=replace(config.sampling, guidance_scale=float(scale)))
        out = Path(out_dir) / f"cfg-{scale:g}.npz"
        path = sample_to_npz(
            pipeline,
            out,
            run,
            batch_size=batch_size,
            rank=rank,
            world_size=world_size,
            model_id=model_id,
            progress=progress,
        )
        if path is None:
            continue
        metrics = compute_metrics(
            path,
            reference,
            extractor,
            cache_dir=cache_dir,
            with_precision_recall=False,
            progress=progress,
            data_root=data_root,
        )
        rows.append({"cfg": float(scale), **metrics})
        log.info("cfg %.3g: FID %.3f", scale, metrics["fid"])
    return rows
