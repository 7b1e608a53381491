"""Named references (fmnist, fmnist-recon) and their shipped statistics: the compact covariance format,
when shipped statistics are used and when they are not (another Inception file, classifier, tokenizer or
copy of the test images), and that the shipped files agree with a fresh computation on a subset."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from lpdgen.data import load_fashion_mnist, write_idx
from lpdgen.evaluation.classifier import FMNISTClassifier
from lpdgen.evaluation.inception import InceptionFeatures
from lpdgen.evaluation.metrics import feature_statistics, fid_to_statistics
from lpdgen.evaluation.protocol import (
    compute_metrics,
    named_reference_images,
    named_reference_statistics,
    reference_classifier_statistics,
)
from lpdgen.evaluation.reference import (
    CORR_SCALE,
    ReferenceName,
    array_sha1,
    load_shipped_statistics,
    pack_covariance,
    parse_reference_name,
    reconstructions,
    state_sha1,
    unpack_covariance,
    write_shipped_statistics,
)
from lpdgen.tokenizer import load_tokenizer

N_TINY = 30  # images in the stand-in test split


class _PoolNet(torch.nn.Module):
    """Stand-in feature network: 2x2 average pool of the 299x299 input -> 12-d features (fast)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 2).flatten(1) * self.scale


def _extractor(folder, scale: float = 1.0) -> InceptionFeatures:
    path = folder / f"pool-{scale}.pt"
    torch.jit.save(torch.jit.script(_PoolNet(scale)), str(path))
    return InceptionFeatures(path, batch_size=16)


class _Counting:
    """An extractor wrapper that counts the images it is asked for (0: nothing was recomputed)."""

    def __init__(self, inner: InceptionFeatures):
        self.inner, self.sha1, self.images = inner, inner.sha1, 0

    def extract(self, batches, *args, **kwargs):
        def counted():
            for b in batches:
                self.images += len(b)
                yield b

        return self.inner.extract(counted(), *args, **kwargs)

    def features(self, batches, *args, **kwargs):
        return self.extract(batches, *args, **kwargs)[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 30-image copy of the test split, the stand-in network, and shipped statistics made from both
    (in their own folder, which the tests point the package at)."""
    root = tmp_path_factory.mktemp("fmnist")
    images, labels = load_fashion_mnist(split="test")
    write_idx(root / "t10k-images-idx3-ubyte", images[:N_TINY])
    write_idx(root / "t10k-labels-idx1-ubyte", labels[:N_TINY].astype(np.uint8))
    extractor = _extractor(root)
    shipped = tmp_path_factory.mktemp("shipped")
    classifier = FMNISTClassifier.from_checkpoint()
    for name in (ReferenceName(), ReferenceName("fmnist")):
        ref = named_reference_images(name, root)
        pixels = ref.images.all()
        info = {"source_sha1": ref.source_sha1, "tokenizer_sha1": ref.tokenizer_sha1}
        write_shipped_statistics(
            shipped / f"{name.file_stem}.npz",
            name,
            pixels,
            extractor.features([pixels], progress=False),
            extractor.sha1,
            classifier,
            info,
        )
    return {"root": root, "extractor": extractor, "shipped": shipped, "classifier": classifier}


@pytest.fixture
def use_shipped(tiny, monkeypatch):
    monkeypatch.setattr("lpdgen.evaluation.reference.SHIPPED_DIR", tiny["shipped"])
    return tiny


def test_reference_names():
    assert parse_reference_name("fmnist") == ReferenceName()
    assert (
        parse_reference_name("fmnist-recon") == ReferenceName("fmnist") == parse_reference_name("fmnist-recon:fmnist")
    )
    assert parse_reference_name("fmnist-recon:fmnist-64") == ReferenceName("fmnist")  # one tokenizer, two names
    assert parse_reference_name("fmnist-recon:fmnist-256").name == "fmnist-recon:fmnist-256"
    assert parse_reference_name("fmnist-recon:vq.safetensors").tokenizer == "vq.safetensors"
    assert parse_reference_name("fmnist.npz") is None and parse_reference_name("runs/fmnist") is None
    assert [ReferenceName(t).file_stem for t in (None, "fmnist", "fmnist-256", "ckpt/vq256.safetensors")] == [
        "fmnist-test",
        "fmnist-recon-fmnist",
        "fmnist-recon-fmnist-256",
        "fmnist-recon-vq256",
    ]
    assert ReferenceName("fmnist").name == "fmnist-recon" and ReferenceName("x.pt").name == "fmnist-recon:x.pt"
    with pytest.raises(ValueError, match="name a tokenizer"):
        parse_reference_name("fmnist-recon:")


@pytest.mark.parametrize("fmt", ["int16", "float32"])
def test_packed_covariance_round_trip(fmt):
    """Variances exact, pairs within the format's rounding; a constant feature (zero variance, as a dead
    classifier unit gives) stays exactly zero instead of turning into NaN correlations."""
    rng = np.random.default_rng(0)
    feats = rng.gamma(2.0, size=(500, 40)) @ rng.normal(size=(40, 40))
    feats[:, 7] = 3.0
    sigma = np.cov(feats, rowvar=False)
    packed = pack_covariance(sigma, fmt)
    back = unpack_covariance(packed)
    assert np.array_equal(np.diagonal(back), np.diagonal(sigma)) and np.array_equal(back, back.T)
    assert not back[7].any() and not back[:, 7].any()
    std = np.sqrt(np.diagonal(sigma))
    scale = np.outer(std, std)
    # int16: each correlation within half a step; float32: each covariance within float32 rounding
    bound = 0.5 / CORR_SCALE * scale if fmt == "int16" else np.abs(sigma) * 2.0**-24
    assert (np.abs(back - sigma) <= bound * (1 + 1e-9) + 1e-300).all()
    assert sum(v.nbytes for v in packed.values()) == 40 * 8 + 40 * 39 // 2 * (2 if fmt == "int16" else 4)
    with pytest.raises(ValueError, match="covariance format"):
        pack_covariance(sigma, "int8")


def test_named_reference_uses_shipped_statistics_without_an_image_pass(use_shipped, tmp_path):
    tiny = use_shipped
    counting = _Counting(tiny["extractor"])
    for name in (ReferenceName("fmnist"), ReferenceName()):
        stats, features, _ = named_reference_statistics(name, counting, cache_dir=tmp_path, data_root=tiny["root"])
        shipped = load_shipped_statistics(name)
        assert counting.images == 0 and features is None and stats.num == N_TINY
        np.testing.assert_array_equal(stats.mu, shipped.inception.mu)
    # a fresh pass (asked for with need_features, then cached) agrees up to the int16 rounding of the pairs
    fresh, features, _ = named_reference_statistics(
        ReferenceName(), counting, cache_dir=tmp_path, need_features=True, data_root=tiny["root"]
    )
    assert counting.images == N_TINY and features.shape == (N_TINY, 12)
    # float32 features differ in the last bits with the batching (30 at once vs 10 + 16 + 4)
    np.testing.assert_allclose(fresh.mu, stats.mu, rtol=1e-6)
    np.testing.assert_allclose(np.diagonal(fresh.sigma), np.diagonal(stats.sigma), rtol=1e-5)
    std = np.sqrt(np.diagonal(fresh.sigma))
    assert (np.abs(stats.sigma - fresh.sigma) <= np.outer(std, std) / CORR_SCALE * 1.01).all()
    named_reference_statistics(ReferenceName(), counting, cache_dir=tmp_path, data_root=tiny["root"])
    assert counting.images == N_TINY  # the cache of the full pass is used from now on


def test_shipped_statistics_of_another_network_tokenizer_or_data_are_not_used(use_shipped, tmp_path, caplog):
    """The hashes recorded beside the statistics decide: a changed Inception file recomputes from the
    images with one line saying why, as does another copy of the test images or another tokenizer."""
    tiny = use_shipped
    other = _Counting(_extractor(tmp_path, scale=2.0))  # another weight file: another SHA1
    with caplog.at_level(logging.INFO, logger="lpdgen"):
        stats, _, _ = named_reference_statistics(ReferenceName(), other, cache_dir=tmp_path, data_root=tiny["root"])
    assert other.images == N_TINY
    lines = [r.getMessage() for r in caplog.records if "were made with" in r.getMessage()]
    assert (
        len(lines) == 1 and "the inception network of SHA1" in lines[0] and lines[0].endswith("from the images instead")
    )
    shipped = load_shipped_statistics(ReferenceName()).inception
    np.testing.assert_allclose(stats.mu, 2.0 * shipped.mu, rtol=1e-6)  # computed with the other network

    # another copy of the test split (--data-root): its statistics are not the shipped ones
    images, labels = load_fashion_mnist(split="test")
    other_root = tmp_path / "other"
    other_root.mkdir()
    write_idx(other_root / "t10k-images-idx3-ubyte", images[N_TINY : 2 * N_TINY])
    write_idx(other_root / "t10k-labels-idx1-ubyte", labels[N_TINY : 2 * N_TINY].astype(np.uint8))
    counting = _Counting(tiny["extractor"])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lpdgen"):
        named_reference_statistics(ReferenceName(), counting, cache_dir=tmp_path, data_root=other_root)
    assert counting.images == N_TINY and "other test images" in caplog.text

    # another tokenizer: reconstructions by a randomly initialised tokenizer of the same shape
    from lpdgen.tokenizer import VQTokenizer

    tok = load_tokenizer("fmnist")
    torch.manual_seed(0)
    changed = VQTokenizer(tok.config)
    path = changed.save(tmp_path / "vq")
    shipped_as = load_shipped_statistics(ReferenceName("fmnist")).path
    shipped_as.with_name(ReferenceName(str(path)).file_stem + ".npz").write_bytes(shipped_as.read_bytes())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lpdgen"):
        named_reference_statistics(ReferenceName(str(path)), counting, cache_dir=tmp_path, data_root=tiny["root"])
    assert counting.images == 2 * N_TINY and "a tokenizer of SHA1" in caplog.text


def test_metrics_against_a_named_reference(use_shipped, tmp_path, caplog):
    """FID against shipped statistics equals FID against the images' own features; precision/recall
    only when asked for (it needs the reference's features); the classifier's Frechet distance comes
    from shipped statistics for the shipped classifier and from the images for another one."""
    tiny = use_shipped
    images, labels = load_fashion_mnist(split="train")
    samples = np.repeat(np.pad(images[:20], ((0, 0), (2, 2), (2, 2)))[..., None], 3, -1)
    np.savez(tmp_path / "s.npz", arr_0=samples, arr_1=labels[:20].astype(np.int64))
    counting = _Counting(tiny["extractor"])
    kw = {
        "cache_dir": tmp_path / "cache",
        "progress": False,
        "data_root": tiny["root"],
        "classifier": tiny["classifier"],
    }
    with caplog.at_level(logging.INFO, logger="lpdgen"):
        quick = compute_metrics(tmp_path / "s.npz", "fmnist", counting, with_precision_recall=None, **kw)
    assert counting.images == 20 and "precision" not in quick and "precision/recall skipped" in caplog.text
    full = compute_metrics(tmp_path / "s.npz", "fmnist", counting, with_precision_recall=True, **kw)
    assert counting.images == 20 + N_TINY + 20 and 0 <= full["precision"] <= 1
    assert quick["fid"] == pytest.approx(full["fid"], rel=1e-4)  # shipped (int16) vs fresh statistics
    assert quick["classifier_fd"] == pytest.approx(full["classifier_fd"], rel=1e-4) and quick["classifier_fd"] > 0
    assert (
        compute_metrics(tmp_path / "s.npz", "fmnist", counting, with_precision_recall=False, **kw).keys()
        == quick.keys()
    )

    torch.manual_seed(1)
    other = FMNISTClassifier()  # another classifier: its reference statistics come from the images
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lpdgen"):
        stats = reference_classifier_statistics("fmnist", other, tiny["root"], tmp_path / "cache")
    assert "the classifier network of SHA1" in caplog.text
    assert len(list((tmp_path / "cache").glob("classifier-32x32x1-*.npz"))) == 1  # computed once, then cached
    fresh = feature_statistics(other.penultimate(named_reference_images(ReferenceName(), tiny["root"]).images.all()))
    np.testing.assert_array_equal(stats.mu, fresh.mu)
    assert fid_to_statistics(other.penultimate(samples), stats) > 0
    assert reference_classifier_statistics(tmp_path / "s.npz", other) is None  # not a named reference


# --- the files shipped in the package -----------------------------------------------------------------

REQUIRED = (ReferenceName(), ReferenceName("fmnist"))  # fmnist, fmnist-recon: what the package must ship


def _shipped_names() -> list[ReferenceName]:
    """The required sets and any other set shipped later (e.g. fmnist-recon:fmnist-256): each file
    in the package's folder is checked, so an added one is tested without editing this file."""
    from lpdgen.embedded import SHIPPED_TOKENIZERS
    from lpdgen.evaluation.reference import RECON_PREFIX, SHIPPED_DIR

    names = list(REQUIRED)
    for path in sorted(SHIPPED_DIR.glob(f"{RECON_PREFIX}-*.npz")):
        tokenizer = path.stem[len(RECON_PREFIX) + 1 :]
        assert tokenizer in SHIPPED_TOKENIZERS, f"{path.name}: reconstructions by a tokenizer lpdgen does not ship"
        if ReferenceName(tokenizer) not in names:
            names.append(ReferenceName(tokenizer))
    return names


SHIPPED = _shipped_names()
FALSE_ALARM = 1e-4  # chance that a correct file fails the subset check below (Bonferroni over dimensions)


def _mean_z(subset: np.ndarray, shipped, population: int) -> np.ndarray:
    """Per dimension, how many standard errors a random subset's mean lies from the shipped mean:
    sampling n of N without replacement, the standard error is ``std * sqrt((1 - n/N) / n)``."""
    n = len(subset)
    se = np.sqrt(np.diagonal(shipped.sigma) * (1 - n / population) / n)
    return (subset.mean(axis=0) - shipped.mu) / np.where(se > 0, se, np.inf)


def _z_bound(dim: int) -> float:
    """|z| that any of ``dim`` standard-normal coordinates exceeds with probability <= FALSE_ALARM
    (union bound, so it holds however the features are correlated)."""
    return float(scipy.stats.norm.isf(FALSE_ALARM / (2 * dim)))


def _subset(n: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(10_000, n, replace=False))


def test_shipped_files_record_the_networks_and_images_they_were_made_with():
    """A changed Inception file, classifier, tokenizer or test split has other hashes than these, and
    then the statistics are recomputed (test above); these are the ones lpdgen ships with."""
    from lpdgen.evaluation.inception import FID_INCEPTION_SHA1

    test = named_reference_images(ReferenceName())
    classifier_sha1 = state_sha1(FMNISTClassifier.from_checkpoint())
    for name in SHIPPED:
        shipped = load_shipped_statistics(name)
        assert shipped is not None, f"no shipped statistics for {name.name}: run scripts/reference_stats.py"
        assert shipped.num == 10_000 and shipped.image_shape == (32, 32, 1) and shipped.name == name.name
        assert shipped.inception_sha1 == FID_INCEPTION_SHA1 and shipped.inception.dim == 2048
        assert shipped.classifier_sha1 == classifier_sha1 and shipped.classifier.dim == 576
        assert shipped.source_sha1 == test.source_sha1 == array_sha1(test.images.all())
        assert shipped.tokenizer_sha1 == (state_sha1(load_tokenizer(name.tokenizer)) if name.tokenizer else "")


def test_shipped_classifier_statistics_equal_a_fresh_computation():
    """The test split's classifier features take seconds, so all 10,000 are compared; reconstructions
    take minutes, so for them a random subset's mean must lie within the sampling error."""
    classifier = FMNISTClassifier.from_checkpoint()
    test = named_reference_images(ReferenceName()).images.all()
    fresh = feature_statistics(classifier.penultimate(test))
    shipped = load_shipped_statistics(ReferenceName()).classifier
    np.testing.assert_allclose(shipped.mu, fresh.mu, rtol=1e-9, atol=1e-12)
    std = np.sqrt(np.diagonal(fresh.sigma))
    np.testing.assert_allclose(np.diagonal(shipped.sigma), np.diagonal(fresh.sigma), rtol=1e-9, atol=1e-12)
    assert (np.abs(shipped.sigma - fresh.sigma) <= np.outer(std, std) / CORR_SCALE * 1.01 + 1e-12).all()

    idx = _subset(300)
    real_feats = classifier.penultimate(test[idx])
    assert np.abs(_mean_z(real_feats, shipped, 10_000)).max() < _z_bound(576)
    for name in SHIPPED[1:]:  # the reconstruction sets
        recon = load_shipped_statistics(name).classifier
        recon_feats = classifier.penultimate(reconstructions(load_tokenizer(name.tokenizer), test[idx]))
        assert np.abs(_mean_z(recon_feats, recon, 10_000)).max() < _z_bound(576), name.name
        if name == REQUIRED[1]:  # the check can fail: real images lie far outside the 64-token reconstructions'
            assert np.abs(_mean_z(real_feats, recon, 10_000)).max() > _z_bound(576)  # (a better tokenizer: nearer)


def test_shipped_inception_means_agree_with_a_fresh_subset():  # ~20 s on 2 quiet cores: 64 images per set
    """The real network on a random 64 of the 10,000 test images and of their reconstructions: each
    subset's mean lies within the sampling error of its shipped mean in every one of the 2048
    dimensions (bound at a 1e-4 false-alarm rate), and the real images' subset lies outside the
    reconstructions' bound, which shows the check is sharp enough to catch a wrong file."""
    extractor = InceptionFeatures(batch_size=32)
    test = named_reference_images(ReferenceName()).images.all()[_subset(64, seed=1)]
    bound = _z_bound(2048)
    real = extractor.features([test], progress=False)
    assert np.abs(_mean_z(real, load_shipped_statistics(ReferenceName()).inception, 10_000)).max() < bound
    for name in SHIPPED[1:]:  # the reconstruction sets
        shipped = load_shipped_statistics(name).inception
        recon = extractor.features([reconstructions(load_tokenizer(name.tokenizer), test)], progress=False)
        assert np.abs(_mean_z(recon, shipped, 10_000)).max() < bound, name.name
        if name == REQUIRED[1]:  # sharp enough to catch a wrong file: the real images miss this bound
            assert np.abs(_mean_z(real, shipped, 10_000)).max() > bound


def test_a_long_first_use_pass_is_announced_in_one_line(tiny, tmp_path, monkeypatch, caplog):
    """Before a reference's features are computed, one line says what, roughly how long (from the first
    batch's timing) and where the result is kept; the threshold is lowered so that a fast stand-in
    network counts as long (no wall-clock threshold in the test itself)."""
    monkeypatch.setattr("lpdgen.evaluation.inception.ANNOUNCE_MIN_S", 0.0)
    counting = _Counting(tiny["extractor"])
    batches = []
    original = counting.extract

    def recording(stream, *args, **kwargs):
        def seen():
            for b in stream:
                batches.append(len(b))
                yield b

        return original(seen(), *args, **kwargs)

    counting.extract = recording
    with caplog.at_level(logging.INFO, logger="lpdgen"):
        named_reference_statistics(
            ReferenceName(), counting, cache_dir=tmp_path, need_features=True, data_root=tiny["root"]
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("computing ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"computing Inception features of the reference fmnist ({N_TINY} images): about ")
    assert "on this machine (" in lines[0] and " s per image over the first 10); " in lines[0]
    assert f"cached in {tmp_path}" in lines[0]
    assert batches[0] == 10 and sum(batches) == N_TINY  # the timed first batch is small

    monkeypatch.setattr("lpdgen.evaluation.inception.ANNOUNCE_MIN_S", float("inf"))  # a short pass says nothing
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lpdgen"):
        named_reference_statistics(
            ReferenceName(), counting, cache_dir=tmp_path / "other", need_features=True, data_root=tiny["root"]
        )
    assert not [r for r in caplog.records if r.getMessage().startswith("computing ")]
