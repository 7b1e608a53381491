"""Named Fashion-MNIST references and the statistics shipped for them, so ``--ref fmnist`` needs no
Inception pass over the 10,000 test images (25+ CPU-minutes) on a fresh machine.

Names (``lpdgen eval metrics --ref NAME``):

- ``fmnist``: the test split zero-padded to 32x32, exactly as the tokenizer (and so every generated
  image) sees it;
- ``fmnist-recon`` / ``fmnist-recon:TOKENIZER``: the same images encoded and decoded by a tokenizer
  (default the shipped 64-token ``fmnist``; ``fmnist-256`` for the 256-token model; or a checkpoint
  path): the best any model behind that tokenizer can score.

For each name a file in ``assets/reference_stats/`` may hold the Inception statistics (mean, and the
covariance in the compact form of :func:`pack_covariance`) and the shipped classifier's penultimate-
feature statistics, each beside the SHA1 of the network that made them. A file is used only when the
network's hash matches; otherwise the statistics are computed from the images as before (and cached).
``scripts/reference_stats.py`` writes these files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..embedded import SHIPPED_TOKENIZERS
from ..images import float_to_uint8, uint8_to_float
from ..utils import eval_mode, get_logger
from .metrics import FIDStatistics, feature_statistics

log = get_logger(__name__)

FMNIST_REFERENCE = "fmnist"  # the Fashion-MNIST test split, padded to 32x32
RECON_PREFIX = "fmnist-recon"  # its reconstructions: fmnist-recon (shipped tokenizer) or fmnist-recon:TOKENIZER
DEFAULT_TOKENIZER = "fmnist"
SHIPPED_DIR = Path(__file__).parent.parent / "assets" / "reference_stats"


@dataclass(frozen=True)
class ReferenceName:
    """A parsed reference name: the real test split (``tokenizer`` None) or its reconstructions."""

    tokenizer: str | None = None

    @property
    def name(self) -> str:
        """The canonical name (``fmnist-recon:fmnist`` is written ``fmnist-recon``)."""
        if self.tokenizer is None:
            return FMNIST_REFERENCE
        return RECON_PREFIX if self.tokenizer == DEFAULT_TOKENIZER else f"{RECON_PREFIX}:{self.tokenizer}"

    @property
    def file_stem(self) -> str:
        """Stem of the shipped statistics file: ``fmnist-test`` or ``fmnist-recon-<tokenizer>``."""
        if self.tokenizer is None:
            return "fmnist-test"
        return f"{RECON_PREFIX}-{Path(self.tokenizer).stem}"


def parse_reference_name(reference: str | os.PathLike) -> ReferenceName | None:
    """The :class:`ReferenceName` of ``fmnist`` / ``fmnist-recon[:TOKENIZER]``; None for anything else
    (a path). A file or folder of that name in the working directory does not shadow the names."""
    text = str(reference)
    if text == FMNIST_REFERENCE:
        return ReferenceName()
    if text == RECON_PREFIX:
        return ReferenceName(DEFAULT_TOKENIZER)
    if text.startswith(RECON_PREFIX + ":"):
        tokenizer = text[len(RECON_PREFIX) + 1 :]
        if not tokenizer:
            raise ValueError(f"reference {text!r}: name a tokenizer after the colon, e.g. {RECON_PREFIX}:fmnist-256")
        return ReferenceName(canonical_tokenizer(tokenizer))
    return None


def canonical_tokenizer(name: str) -> str:
    """One name per shipped tokenizer (``fmnist-64`` -> ``fmnist``, its first name), so that one set of
    reconstructions has one statistics file; other names (checkpoint paths) are kept as given."""
    weights = SHIPPED_TOKENIZERS.get(name)
    return next(k for k, v in SHIPPED_TOKENIZERS.items() if v == weights) if weights else name


def reconstructions(tokenizer, images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` images encoded and decoded by ``tokenizer``, as uint8 of the same shape.

    One image at a time, both ways: batched convolutions round differently with the batch size (a
    batch of 500 and single images gave different codes for 1 image in 2,000, and decoding moves a
    few pixels by a grey level, which is why :func:`lpdgen.evaluation.protocol.sample_images` decodes
    alone too), so a reconstruction depends on its image alone, however the set is batched.
    """
    out = []
    with eval_mode(tokenizer), torch.inference_mode(), _one_thread():
        for image in images:
            codes = tokenizer.encode(uint8_to_float(image[None]))
            out.append(float_to_uint8(tokenizer.decode(codes)))
    return np.concatenate(out) if out else images[:0].copy()


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the count. One 32x32 image is too little work to
    split, and on a busy machine the threads' synchronisation dominated: 10 reconstructions took 19 s
    on 2 threads and 0.22 s on 1 (2 shared cores, load average ~10)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def array_sha1(array: np.ndarray) -> str:
    """SHA1 of an array's shape, dtype and bytes: identifies an image set in manifests."""
    h = hashlib.sha1(f"{array.shape}{array.dtype}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def state_sha1(module: torch.nn.Module) -> str:
    """SHA1 of a module's state dict (names, shapes, dtypes, values): identifies a tokenizer or
    classifier whatever file, name or format it was loaded from."""
    h = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype, 0-d tensors included
    return h.hexdigest()


# --- the shipped file format --------------------------------------------------------------------------

FORMAT_VERSION = 1
CORR_SCALE = 32767  # correlations in [-1, 1] stored as int16: an absolute error of at most 1.5e-5 each
COVARIANCE_FORMATS = ("int16", "float32")  # see pack_covariance; docs/evaluation.md has the measured FID errors
DEFAULT_COVARIANCE_FORMAT = "int16"


def pack_covariance(sigma: np.ndarray, fmt: str = DEFAULT_COVARIANCE_FORMAT) -> dict[str, np.ndarray]:
    """A symmetric ``(D, D)`` covariance in fewer bytes: the variances in float64 (so ``tr(sigma)``,
    which enters FID directly, is exact) and the strict upper triangle either as float32 covariances
    (``fmt="float32"``, 4 bytes per pair) or as correlations rounded to int16 (``"int16"``, 2 bytes per
    pair: every correlation within 1.5e-5, scale-free because each pair is divided by its two
    standard deviations). The lower triangle is the upper one mirrored, so it is not stored."""
    sigma = np.asarray(sigma, dtype=np.float64)
    if fmt not in COVARIANCE_FORMATS:
        raise ValueError(f"covariance format must be one of {COVARIANCE_FORMATS}, got {fmt!r}")
    var = np.diagonal(sigma).copy()
    upper = np.triu_indices(len(sigma), k=1)
    if fmt == "float32":
        return {"var": var, "cov_float32": sigma[upper].astype(np.float32)}
    std = np.sqrt(np.clip(var, 0.0, None))
    denom = np.outer(std, std)[upper]
    corr = np.divide(sigma[upper], denom, out=np.zeros_like(denom), where=denom > 0)
    return {"var": var, "corr_int16": np.round(np.clip(corr, -1.0, 1.0) * CORR_SCALE).astype(np.int16)}


def unpack_covariance(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The float64 ``(D, D)`` covariance from :func:`pack_covariance`'s arrays."""
    var = np.asarray(arrays["var"], dtype=np.float64)
    d = len(var)
    upper = np.triu_indices(d, k=1)
    sigma = np.zeros((d, d))
    if "cov_float32" in arrays:
        sigma[upper] = arrays["cov_float32"]
    else:
        std = np.sqrt(np.clip(var, 0.0, None))
        sigma[upper] = arrays["corr_int16"].astype(np.float64) / CORR_SCALE * np.outer(std, std)[upper]
    sigma = sigma + sigma.T
    sigma[np.diag_indices(d)] = var
    return sigma


@dataclass
class ShippedStatistics:
    """One shipped file: the Inception and classifier-feature statistics of a named reference, each
    with the SHA1 of the network that made them (the statistics are valid for that network only)."""

    path: Path
    name: str
    num: int
    image_shape: tuple[int, ...]
    inception: FIDStatistics
    inception_sha1: str
    classifier: FIDStatistics
    classifier_sha1: str
    source_sha1: str  # array_sha1 of the padded test images the set was made from
    tokenizer_sha1: str  # "" for the real test split


def write_shipped_statistics(
    path: str | os.PathLike,
    ref: ReferenceName,
    images: np.ndarray,
    inception_features: np.ndarray,
    inception_sha1: str,
    classifier,
    info: dict,
    fmt: str = DEFAULT_COVARIANCE_FORMAT,
) -> Path:
    """Write a reference's statistics file (compressed ``.npz``, atomically): Inception statistics of
    ``inception_features`` (computed with the network of hash ``inception_sha1``) and the
    penultimate-feature statistics of ``classifier`` on ``images``. ``info`` (``source_sha1``: the
    :func:`array_sha1` of the test images the set was made from; optionally a description ``source``,
    the set's own ``images_sha1`` and the ``tokenizer_sha1``) is stored beside them."""
    from ..io import atomic_write

    inception = feature_statistics(inception_features)
    cls = feature_statistics(classifier.penultimate(images))
    arrays = {
        "format_version": np.asarray(FORMAT_VERSION),
        "name": np.asarray(ref.name),
        "num": np.asarray(len(images)),
        "image_shape": np.asarray(images.shape[1:], dtype=np.int64),
        "source": np.asarray(info.get("source", "")),
        "images_sha1": np.asarray(info.get("images_sha1", "")),
        "source_sha1": np.asarray(info["source_sha1"]),
        "tokenizer": np.asarray(ref.tokenizer or ""),
        "tokenizer_sha1": np.asarray(info.get("tokenizer_sha1", "")),
        "inception_sha1": np.asarray(inception_sha1),
        "inception_mu": inception.mu,
        "classifier_sha1": np.asarray(state_sha1(classifier)),
        "classifier_mu": cls.mu,
    }
    arrays.update({f"inception_{k}": v for k, v in pack_covariance(inception.sigma, fmt).items()})
    arrays.update({f"classifier_{k}": v for k, v in pack_covariance(cls.sigma, fmt).items()})

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


def _unpack(f, prefix: str, num: int) -> FIDStatistics:
    arrays = {k[len(prefix) + 1 :]: f[k] for k in f.files if k.startswith(prefix + "_")}
    return FIDStatistics(arrays["mu"], unpack_covariance(arrays), num)


def load_shipped_statistics(ref: ReferenceName, folder: str | os.PathLike | None = None) -> ShippedStatistics | None:
    """The shipped statistics of ``ref`` (from ``folder``, default the package's), or None if none ship."""
    path = Path(folder or SHIPPED_DIR) / f"{ref.file_stem}.npz"
    if not path.is_file():
        return None
    with np.load(path) as f:
        if int(f["format_version"]) != FORMAT_VERSION:
            raise ValueError(
                f"{path}: statistics format {int(f['format_version'])}, this lpdgen reads "
                f"{FORMAT_VERSION} (regenerate with scripts/reference_stats.py)"
            )
        num = int(f["num"])
        return ShippedStatistics(
            path,
            str(f["name"]),
            num,
            tuple(int(v) for v in f["image_shape"]),
            _unpack(f, "inception", num),
            str(f["inception_sha1"]),
            _unpack(f, "classifier", num),
            str(f["classifier_sha1"]),
            str(f["source_sha1"]),
            str(f["tokenizer_sha1"]),
        )
