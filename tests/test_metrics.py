"""FID / IS / precision-recall math against independent computations, and the statistics files."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lpdgen.evaluation.metrics import (
    FIDStatistics,
    feature_statistics,
    fid,
    fid_from_features,
    fid_to_statistics,
    frechet_distance,
    frechet_distance_low_rank,
    frechet_distance_to_statistics,
    inception_score,
    load_statistics,
    precision_recall,
    save_statistics,
    statistics_cache_path,
)


def _random_spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or 2 * d))
    return a @ a.T / a.shape[1]


def _frechet_by_eigh(mu1, s1, mu2, s2) -> float:
    """Independent route: tr((S1 S2)^1/2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), symmetric eigensolvers only."""
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_matches_eigendecomposition(seed):
    rng = np.random.default_rng(seed)
    d = 24
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_frechet_by_eigh(mu1, s1, mu2, s2), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("n1,n2", [(5, 9), (12, 12), (30, 7)])
def test_low_rank_frechet_distance_equals_the_full_covariance_form(n1, n2):
    """Fewer images than dimensions: the (n1, n2) SVD route gives the (D, D) value (up to the eigensolver's
    noise: the reference sums square roots of ~1e-15 eigenvalues that are exactly 0 in theory)."""
    rng = np.random.default_rng(n1 * 100 + n2)
    d = 40
    f1, f2 = rng.normal(size=(n1, d)), rng.normal(loc=0.3, size=(n2, d)) * 1.5
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    expect = _frechet_by_eigh(f1.mean(0), s1, f2.mean(0), s2)
    assert frechet_distance_low_rank(f1, f2) == pytest.approx(expect, rel=1e-7)
    assert frechet_distance_low_rank(f2, f1) == pytest.approx(frechet_distance_low_rank(f1, f2), rel=1e-12)
    assert fid_from_features(f1, f2) == frechet_distance_low_rank(f1, f2)


@pytest.mark.parametrize("n1,n2", [(5, 60), (12, 12), (30, 7)])
def test_frechet_distance_to_statistics_equals_the_feature_forms(n1, n2):
    """A small set against statistics only (shipped ones carry no features) scores what it scores
    against the features those statistics came from, whichever set is the larger (tolerance as above:
    square roots of eigenvalues that are 0 in theory)."""
    rng = np.random.default_rng(n1 * 7 + n2)
    d = 40
    f1, f2 = rng.normal(size=(n1, d)), rng.normal(loc=0.3, size=(n2, d)) * 1.5
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    expect = _frechet_by_eigh(f1.mean(0), s1, f2.mean(0), s2)
    got = frechet_distance_to_statistics(f1, feature_statistics(f2) if n2 > d else FIDStatistics(f2.mean(0), s2))
    assert got == pytest.approx(expect, rel=1e-7)
    assert got == pytest.approx(frechet_distance_low_rank(f1, f2), rel=1e-7)  # both sum roots of ~0 eigenvalues
    with pytest.warns(UserWarning, match="covariance is singular"):  # the small-sample warning, as on every path
        assert fid_to_statistics(f1, FIDStatistics(f2.mean(0), s2)) == got
    with pytest.raises(ValueError, match="to match the statistics"):
        frechet_distance_to_statistics(f1[:, :5], FIDStatistics(f2.mean(0), s2))


def test_fid_from_features_uses_the_protocol_form_for_large_sets():
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(200, 8)), rng.normal(size=(150, 8))
    assert fid_from_features(f1, f2) == pytest.approx(fid(feature_statistics(f1), feature_statistics(f2)), rel=1e-12)
    assert fid_from_features(f1, f2) == pytest.approx(frechet_distance_low_rank(f1, f2), rel=1e-7)
    with pytest.raises(ValueError, match="one D"):
        frechet_distance_low_rank(f1, rng.normal(size=(5, 9)))


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.1, 4, size=10), rng.uniform(0.1, 4, size=10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_identical_gaussians_is_zero_and_symmetric():
    rng = np.random.default_rng(4)
    mu, s = rng.normal(size=16), _random_spd(rng, 16)
    s2 = _random_spd(rng, 16)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-8
    assert frechet_distance(mu, s, mu + 1, s2) == pytest.approx(frechet_distance(mu + 1, s2, mu, s), rel=1e-8)


def test_frechet_distance_singular_covariances_stay_finite_and_close():
    # rank-deficient covariances (fewer samples than dimensions), the case that needs the eps offset
    rng = np.random.default_rng(5)
    d = 32
    s1, s2 = _random_spd(rng, d, rank=8), _random_spd(rng, d, rank=8)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    value = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value) and value > 0
    assert value == pytest.approx(_frechet_by_eigh(mu1, s1, mu2, s2), rel=1e-3)


def test_frechet_distance_rejects_bad_shapes():
    mu, s = np.zeros(4), np.eye(4)
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(mu, s, np.zeros(5), np.eye(5))
    with pytest.raises(ValueError, match="sigma must have shape"):
        frechet_distance(mu, np.eye(3), mu, s)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu, s * np.nan, mu, s)


def test_feature_statistics_match_naive_mean_and_covariance():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 5))
    stats = feature_statistics(x)
    mean = x.sum(axis=0) / len(x)
    cov = sum(np.outer(r - mean, r - mean) for r in x) / (len(x) - 1)
    np.testing.assert_allclose(stats.mu, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, cov, rtol=1e-10)
    assert stats.num == 50 and stats.dim == 5


def test_feature_statistics_warns_when_covariance_is_singular():
    with pytest.warns(UserWarning, match="covariance is singular"):
        feature_statistics(np.random.default_rng(0).normal(size=(8, 16)))
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics(np.zeros((1, 4)))


def test_the_small_sample_fid_path_warns_too():
    """Few images take the exact low-rank path (no covariance matrices), whose FID is as biased."""
    from lpdgen.evaluation.metrics import fid_from_features

    rng = np.random.default_rng(0)
    with pytest.warns(UserWarning, match="only 8 images for 16-d features: .* FID is biased upwards"):
        fid_from_features(rng.normal(size=(8, 16)), rng.normal(size=(40, 16)))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough images: no warning
        fid_from_features(rng.normal(size=(40, 16)), rng.normal(size=(40, 16)))


def test_fid_shrinks_with_more_samples_of_the_same_distribution():
    rng = np.random.default_rng(7)
    small = [
        fid(feature_statistics(rng.normal(size=(100, 8))), feature_statistics(rng.normal(size=(100, 8))))
        for _ in range(3)
    ]
    large = [
        fid(feature_statistics(rng.normal(size=(5000, 8))), feature_statistics(rng.normal(size=(5000, 8))))
        for _ in range(3)
    ]
    assert np.mean(large) < np.mean(small) / 5


def test_inception_score_extremes():
    c, n = 10, 200
    confident_balanced = np.full((n, c), -50.0)
    confident_balanced[np.arange(n), np.arange(n) % c] = 50.0
    mean, std = inception_score(confident_balanced, splits=10)
    assert mean == pytest.approx(c, rel=1e-6) and std < 1e-6
    collapsed = np.zeros((n, c))
    collapsed[:, 3] = 50.0
    assert inception_score(collapsed)[0] == pytest.approx(1.0, abs=1e-6)
    uniform = np.zeros((n, c))
    assert inception_score(uniform)[0] == pytest.approx(1.0, abs=1e-9)


def test_inception_score_matches_naive_formula():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(90, 6)) * 3
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = []
    for part in np.array_split(p, 3):
        py = part.mean(axis=0)
        scores.append(np.exp(np.mean([np.sum(q * np.log(q / py)) for q in part])))
    mean, std = inception_score(logits, splits=3)
    assert mean == pytest.approx(np.mean(scores), rel=1e-9) and std == pytest.approx(np.std(scores), rel=1e-6)


def _naive_precision_recall(real, fake, k):
    def radii(x):
        return np.array([np.sort([np.linalg.norm(a - b) for b in x])[k] for a in x])

    def coverage(manifold, r, queries):
        return np.mean([any(np.linalg.norm(q - m) <= rm for m, rm in zip(manifold, r)) for q in queries])

    return coverage(real, radii(real), fake), coverage(fake, radii(fake), real)


def test_precision_recall_matches_brute_force():
    rng = np.random.default_rng(9)
    real = rng.normal(size=(40, 3))
    fake = rng.normal(loc=0.7, size=(30, 3)) * 1.3
    got = precision_recall(real, fake, k=3, chunk=7)
    assert got == pytest.approx(_naive_precision_recall(real, fake, 3), abs=1e-12)


def test_precision_recall_extremes():
    rng = np.random.default_rng(10)
    real = rng.normal(size=(50, 4))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    with pytest.raises(ValueError, match="more than k"):
        precision_recall(real[:3], real[:3])


def test_statistics_file_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(11)
    feats = rng.normal(size=(30, 6))
    stats = feature_statistics(feats)
    path = save_statistics(tmp_path / "s.npz", stats, features=feats)
    loaded, loaded_feats = load_statistics(path, dim=6)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.num == 30 and loaded_feats.shape == (30, 6)
    with pytest.raises(ValueError, match="dimension 6, the feature network gives 2048"):
        load_statistics(path, dim=2048)

    np.savez(tmp_path / "bad_shape.npz", mu=np.zeros(4), sigma=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="bad_shape.npz: statistics: sigma must have shape"):
        load_statistics(tmp_path / "bad_shape.npz")
    np.savez(tmp_path / "images.npz", arr_0=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="no 'mu'/'sigma'"):
        load_statistics(tmp_path / "images.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_statistics(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        load_statistics(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="mu must have shape"):
        FIDStatistics(np.zeros((2, 2)), np.eye(2))


def test_cache_path_changes_with_content_and_network(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"x")
    first = statistics_cache_path(tmp_path / "cache", folder, "sha-a")
    assert statistics_cache_path(tmp_path / "cache", folder, "sha-a") == first
    assert statistics_cache_path(tmp_path / "cache", folder, "sha-b") != first
    time.sleep(0.01)
    (folder / "b.png").write_bytes(b"yy")
    assert statistics_cache_path(tmp_path / "cache", folder, "sha-a") != first
