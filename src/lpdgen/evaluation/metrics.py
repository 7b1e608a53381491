"""Sample-quality metrics on feature vectors: FID statistics, the Frechet distance, Inception Score,
precision/recall, and the on-disk format (and cache) of reference statistics.

Everything here is a pure function of arrays, except the small file helpers at the end, so the math
can be tested against independent computations. Feature extraction is in :mod:`lpdgen.evaluation.inception`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from ..io import save_npz

FID_EPS = 1e-6  # diagonal offset when sigma1 @ sigma2 is singular (pytorch-fid / ADM)
IMAG_ATOL = 1e-3  # largest tolerated imaginary diagonal of sqrtm before the result is rejected (pytorch-fid)
PR_NEIGHBOURS = 3  # k of the k-NN manifold estimate (Kynkaanniemi et al. 2019; ADM evaluator)
IS_SPLITS = 10  # the Inception Score's customary number of splits


@dataclass
class FIDStatistics:
    """Mean ``mu (D,)`` and covariance ``sigma (D, D)`` of a feature set; ``num`` images (0 = unknown,
    e.g. ADM's published reference statistics)."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int = 0

    def __post_init__(self) -> None:
        self.mu = np.asarray(self.mu, dtype=np.float64)
        self.sigma = np.asarray(self.sigma, dtype=np.float64)
        check_statistics(self.mu, self.sigma)

    @property
    def dim(self) -> int:
        return self.mu.shape[0]


def check_statistics(mu: np.ndarray, sigma: np.ndarray, what: str = "statistics") -> None:
    """ValueError unless ``mu`` is ``(D,)`` and ``sigma`` is a finite ``(D, D)``."""
    if mu.ndim != 1:
        raise ValueError(f"{what}: mu must have shape (D,), got {mu.shape}")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{what}: sigma must have shape ({mu.shape[0]}, {mu.shape[0]}) to match mu, got {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{what}: mu/sigma contain NaN or inf")


def warn_if_few_images(n: int, d: int) -> None:
    """Warn when ``n`` images meet ``d``-d features with ``n <= d``: the covariance is then singular and
    FID is biased upwards (by a lot: 37.8 between two halves of one distribution at N = 500,
    docs/evaluation.md), so a small-sample FID must not be read as a published-style number."""
    if n <= d:
        warnings.warn(
            f"only {n} images for {d}-d features: the covariance is singular and FID is biased "
            f"upwards; use more than {d} (the protocol uses 50,000)",
            stacklevel=3,
        )


def feature_statistics(features: np.ndarray) -> FIDStatistics:
    """Mean and unbiased covariance of ``(N, D)`` features (computed in float64).

    Warns when N <= D: the covariance is then rank-deficient and FID is biased upwards (the protocol
    uses 50,000 images for 2048-d features).
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {features.shape}")
    n, d = features.shape
    if n < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {n}")
    warn_if_few_images(n, d)
    return FIDStatistics(features.mean(axis=0), np.cov(features, rowvar=False), n)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = FID_EPS
) -> float:
    """Frechet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``.

    The matrix square root is scipy's ``sqrtm`` as in pytorch-fid and the ADM evaluator: when it is
    not finite (singular product), ``eps`` is added to both diagonals; a complex result is accepted
    only if its diagonal's imaginary part is negligible, and its real part is used.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    check_statistics(mu1, sigma1, "first statistics")
    check_statistics(mu2, sigma2, "second statistics")
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"statistics have different dimensions: {mu1.shape[0]} vs {mu2.shape[0]} "
            "(were they computed with the same feature network?)"
        )
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAG_ATOL):
            raise ValueError(
                f"matrix square root has an imaginary component {np.abs(covmean.imag).max():.3g}; "
                "the covariances are badly conditioned (too few images?)"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(stats1: FIDStatistics, stats2: FIDStatistics) -> float:
    """FID between two :class:`FIDStatistics`."""
    return frechet_distance(stats1.mu, stats1.sigma, stats2.mu, stats2.sigma)


def frechet_distance_low_rank(features1: np.ndarray, features2: np.ndarray) -> float:
    """The Frechet distance of two feature sets' Gaussians, exact and fast when a set has fewer images
    than dimensions (e.g. a quick check on 100 images of 2048-d Inception features).

    With centred features A1 (n1, D), A2 (n2, D), sigma_i = A_i^T A_i / (n_i - 1), the nonzero
    eigenvalues of sigma1 sigma2 are the squared singular values of A1 A2^T / sqrt((n1-1)(n2-1)), so
    ``tr((sigma1 sigma2)^(1/2))`` is the sum of those singular values: an (n1, n2) SVD instead of a
    (D, D) ``sqrtm``, which is both slow and inaccurate on the singular products of small sets.
    """
    f1, f2 = (np.asarray(f, dtype=np.float64) for f in (features1, features2))
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be (N1, D) and (N2, D) with one D, got {f1.shape} and {f2.shape}")
    if min(len(f1), len(f2)) < 2:
        raise ValueError("need at least 2 feature vectors per set")
    a1, a2 = f1 - f1.mean(axis=0), f2 - f2.mean(axis=0)
    c1, c2 = len(f1) - 1, len(f2) - 1
    diff = f1.mean(axis=0) - f2.mean(axis=0)
    cross = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt(c1 * c2)
    return float(diff @ diff + (a1 * a1).sum() / c1 + (a2 * a2).sum() / c2 - 2.0 * cross)


def frechet_distance_to_statistics(features: np.ndarray, stats: FIDStatistics) -> float:
    """The Frechet distance of a feature set's Gaussian to given statistics (e.g. shipped ones, which
    carry no features), exact and fast when the set has fewer images than dimensions.

    With centred features A (n, D) and sigma1 = A^T A / (n - 1), the nonzero eigenvalues of
    sigma1 sigma2 are those of the (n, n) matrix A sigma2 A^T / (n - 1), which is symmetric positive
    semi-definite, so ``tr((sigma1 sigma2)^(1/2))`` is the sum of the square roots of its eigenvalues.
    It is the same number :func:`frechet_distance_low_rank` gives when ``stats`` come from features,
    so a small sample set scores the same against shipped statistics as against the images.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != stats.dim:
        raise ValueError(f"features must be (N, {stats.dim}) to match the statistics, got {f.shape}")
    if len(f) < 2:
        raise ValueError("need at least 2 feature vectors")
    a = f - f.mean(axis=0)
    c = len(f) - 1
    diff = f.mean(axis=0) - stats.mu
    eig = np.linalg.eigvalsh(a @ stats.sigma @ a.T / c)
    cross = np.sqrt(np.clip(eig, 0.0, None)).sum()
    return float(diff @ diff + (a * a).sum() / c + np.trace(stats.sigma) - 2.0 * cross)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID of two feature sets: the protocol's ``sqrtm`` of the covariances when both sets have more
    images than dimensions, else the exact low-rank form (:func:`frechet_distance_low_rank`)."""
    if min(len(features1), len(features2)) <= np.shape(features1)[1]:
        warn_if_few_images(min(len(features1), len(features2)), np.shape(features1)[1])
        return frechet_distance_low_rank(features1, features2)
    return fid(feature_statistics(features1), feature_statistics(features2))


def fid_to_statistics(features: np.ndarray, stats: FIDStatistics) -> float:
    """FID of a feature set against statistics alone: the protocol's ``sqrtm`` form when the set has
    more images than dimensions, else the exact low-rank form (:func:`frechet_distance_to_statistics`)."""
    if len(features) <= stats.dim:
        warn_if_few_images(len(features), stats.dim)  # like every other small-sample path
        return frechet_distance_to_statistics(features, stats)
    return fid(feature_statistics(features), stats)


def inception_score(logits: np.ndarray | torch.Tensor, splits: int = IS_SPLITS) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` of ``(N, C)`` classifier logits: mean and std
    over ``splits`` consecutive chunks (the customary protocol). Works for any classifier's logits."""
    logits = torch.as_tensor(logits, dtype=torch.float64)
    if logits.ndim != 2 or len(logits) < splits:
        raise ValueError(f"need (N, C) logits with N >= splits={splits}, got {tuple(logits.shape)}")
    log_p = torch.log_softmax(logits, dim=1)
    scores = []
    for part in torch.tensor_split(log_p, splits):
        log_marginal = torch.logsumexp(part, dim=0) - np.log(len(part))  # log p(y) over this split
        kl = (part.exp() * (part - log_marginal)).sum(dim=1)
        scores.append(kl.mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def _kth_neighbour_radii(features: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row of the same set."""
    radii = []
    for part in torch.split(features, chunk):
        d = torch.cdist(part, features)  # (chunk, N)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # k+1: the point itself is at distance 0
    return torch.cat(radii)


def _coverage(manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, chunk: int) -> float:
    """Fraction of ``queries`` inside at least one ball (manifold point, radius)."""
    inside = []
    for part in torch.split(queries, chunk):
        d = torch.cdist(part, manifold)  # (chunk, M)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside).double().mean().item()


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = PR_NEIGHBOURS, chunk: int = 1024
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of ``(N, D)`` feature sets.

    Each set's manifold is the union of balls around its points with radius = distance to the k-th
    nearest neighbour. Precision: fraction of fake points inside the real manifold; recall: fraction
    of real points inside the fake manifold. Distances in float64.
    """
    real_t, fake_t = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)
    if real_t.ndim != 2 or fake_t.ndim != 2 or real_t.shape[1] != fake_t.shape[1]:
        raise ValueError(f"need (N, D) feature sets of equal D, got {tuple(real_t.shape)} and {tuple(fake_t.shape)}")
    if min(len(real_t), len(fake_t)) <= k:
        raise ValueError(f"need more than k={k} points per set, got {len(real_t)} real and {len(fake_t)} fake")
    precision = _coverage(real_t, _kth_neighbour_radii(real_t, k, chunk), fake_t, chunk)
    recall = _coverage(fake_t, _kth_neighbour_radii(fake_t, k, chunk), real_t, chunk)
    return precision, recall


# --- statistics files --------------------------------------------------------------------------------


def save_statistics(
    path: str | os.PathLike,
    stats: FIDStatistics,
    features: np.ndarray | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> Path:
    """Write ``mu``, ``sigma`` (float64), ``num`` and optionally ``features`` (float32, for
    precision/recall) and ``image_shape`` (H, W, C of the source images, so a resolution mismatch is
    caught before any features are extracted) to an ``.npz`` atomically; ADM-compatible (``mu``/``sigma``)."""
    arrays = {"mu": stats.mu, "sigma": stats.sigma, "num": np.asarray(stats.num)}
    if features is not None:
        arrays["features"] = np.asarray(features, dtype=np.float32)
    if image_shape is not None:
        arrays["image_shape"] = np.asarray(image_shape, dtype=np.int64)
    return save_npz(path, **arrays)


def load_statistics(path: str | os.PathLike, dim: int | None = None) -> tuple[FIDStatistics, np.ndarray | None]:
    """Read an ``.npz`` with ``mu`` and ``sigma`` (ADM reference statistics or :func:`save_statistics`);
    returns ``(stats, features or None)``. ``dim`` checks the feature dimension."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"statistics file not found: {path}")
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in ("mu", "sigma", "num", "features") if k in f.files}
            names = sorted(f.files)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from e
    if "mu" not in arrays or "sigma" not in arrays:
        raise ValueError(f"{path}: no 'mu'/'sigma' arrays (found {names})")
    mu, sigma = arrays["mu"], arrays["sigma"]
    num = int(arrays["num"]) if "num" in arrays else 0
    features = arrays.get("features")
    try:
        stats = FIDStatistics(mu, sigma, num)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    if dim is not None and stats.dim != dim:
        raise ValueError(f"{path}: statistics have dimension {stats.dim}, the feature network gives {dim}")
    return stats, features


def statistics_cache_path(cache_dir: str | os.PathLike, source: str | os.PathLike, weights_sha1: str) -> Path:
    """Cache file for the statistics of an image set: keyed by the set's path, size and modification
    times (so a changed set is recomputed) and by the feature network's hash."""
    source = Path(source).resolve()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    listing = [(str(p.relative_to(source.parent)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = hashlib.sha1(json.dumps([str(source), listing, weights_sha1]).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{source.stem}-{key}.npz"


def default_cache_dir() -> Path:
    """``$LPDGEN_CACHE/fid`` or ``$XDG_CACHE_HOME/lpdgen/fid`` (default ``~/.cache/lpdgen/fid``)."""
    if os.environ.get("LPDGEN_CACHE"):
        return Path(os.environ["LPDGEN_CACHE"]) / "fid"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lpdgen" / "fid"
