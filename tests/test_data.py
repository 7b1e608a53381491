"""Datasets: Fashion-MNIST IDX loading (real files and bad ones), ImageFolder + ADM crop, npz token
layout, and the reproducible flip choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpdgen.data import (
    FashionMNIST,
    ImageFolder,
    center_crop_arr,
    image_dataset,
    load_fashion_mnist,
    read_idx,
    write_idx,
)
from lpdgen.training.token_datasets import NpzTokenDataset, flip_choice

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def fmnist_root() -> Path:
    if not FMNIST.is_dir():
        pytest.fail("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    return FMNIST


def test_fashion_mnist_split_sizes_and_class_balance(fmnist_root):
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = load_fashion_mnist(fmnist_root, split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert np.array_equal(np.bincount(labels, minlength=10), np.full(10, n // 10))


def test_fashion_mnist_dataset_pads_with_background(fmnist_root):
    ds = FashionMNIST(fmnist_root, "test", pad_to=32)
    x, y = ds[7]
    raw, labels = load_fashion_mnist(fmnist_root, "test")
    assert x.shape == (1, 32, 32) and y == labels[7]
    assert torch.all(x[:, :2] == -1) and torch.all(x[:, :, -2:] == -1)  # the 2-pixel border is black
    assert torch.equal(((x[0, 2:30, 2:30] + 1) * 127.5).round().to(torch.uint8), torch.from_numpy(raw[7].copy()))
    xb, yb = ds.batch(torch.tensor([7, 8]))
    assert torch.equal(xb[0], x) and yb.tolist() == labels[7:9].tolist()
    # images and labels are one type, so one index picks matching pairs from both
    assert isinstance(ds.images, torch.Tensor) and isinstance(ds.labels, torch.Tensor)
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    shoes = ds.labels == 9
    assert ds.images[shoes].shape == (1000, 32, 32)
    with pytest.raises(ValueError, match="smaller than"):
        FashionMNIST(fmnist_root, "test", pad_to=20)


def test_idx_round_trip_gz_and_raw(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    for name in ("a-idx3-ubyte.gz", "a-idx3-ubyte"):
        assert np.array_equal(read_idx(write_idx(tmp_path / name, arr)), arr)


def _write_fake_fmnist(root: Path, n: int, gz: bool = True) -> None:
    rng = np.random.default_rng(1)
    ext = ".gz" if gz else ""
    for split in ("train", "t10k"):
        write_idx(root / f"{split}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{split}-labels-idx1-ubyte{ext}", (np.arange(n) % 10).astype(np.uint8))


def test_bad_paths_and_truncated_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(tmp_path, "val")
    _write_fake_fmnist(tmp_path, 12, gz=False)
    images, labels = load_fashion_mnist(tmp_path, "test")  # raw (not gzipped) files work too
    assert images.shape == (12, 28, 28) and labels.tolist() == [i % 10 for i in range(12)]
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        load_fashion_mnist(tmp_path, "test")
    path.write_bytes(b"\x12\x34\x08\x03")
    with pytest.raises(ValueError, match="magic"):
        load_fashion_mnist(tmp_path, "test")
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(ValueError, match="truncated IDX header"):
        load_fashion_mnist(tmp_path, "test")
    _write_fake_fmnist(tmp_path, 12, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(11, dtype=np.uint8))
    with pytest.raises(ValueError, match="do not pair up"):
        load_fashion_mnist(tmp_path, "test")


def test_center_crop_follows_adm_recipe():
    # 600x300 (w x h), target 64: box-halve while the short side is >= 128 (300 -> 150 -> 75),
    # bicubic to 128x64, crop the middle 64 columns.
    arr = np.zeros((300, 600, 3), dtype=np.uint8)
    arr[:, :150] = (255, 0, 0)
    arr[:, 150:450] = (0, 255, 0)  # the middle half: exactly what the center crop keeps
    arr[:, 450:] = (0, 0, 255)
    out = np.asarray(center_crop_arr(Image.fromarray(arr), 64))
    assert out.shape == (64, 64, 3)
    inner = out[:, 8:-8].reshape(-1, 3).astype(int)
    assert (inner[:, 1] > 200).all() and (inner[:, 0] < 40).all() and (inner[:, 2] < 40).all()
    ref = (
        Image.fromarray(arr).resize((300, 150), Image.BOX).resize((150, 75), Image.BOX).resize((128, 64), Image.BICUBIC)
    )
    assert np.array_equal(out, np.asarray(ref)[:, 32:96])
    small = np.asarray(center_crop_arr(Image.fromarray(arr[:40, :50]), 64))  # upscaling path
    assert small.shape == (64, 64, 3)


def test_image_folder_sorted_classes_and_files(tmp_path):
    rng = np.random.default_rng(0)
    for cls, sizes in (("zebra", [(50, 40)]), ("ant", [(30, 30), (64, 80)])):
        (tmp_path / cls).mkdir()
        for i, (w, h) in enumerate(sizes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path, image_size=32)
    assert ds.classes == ["ant", "zebra"] and ds.labels.tolist() == [0, 0, 1]
    x, y = ds[2]
    assert x.shape == (3, 32, 32) and y == 1 and x.min() >= -1 and x.max() <= 1
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(ValueError, match="needs --data-root"):
        image_dataset("imagefolder")
    with pytest.raises(ValueError, match="unknown dataset"):
        image_dataset("cifar")


def test_flip_choice_is_reproducible_and_balanced():
    picks = np.array([flip_choice(3, 0, i) for i in range(20_000)])
    assert 0.48 < picks.mean() < 0.52
    assert np.array_equal(picks, [flip_choice(3, 0, i) for i in range(20_000)])
    other_epoch = np.array([flip_choice(3, 1, i) for i in range(20_000)])
    assert 0.45 < (picks == other_epoch).mean() < 0.55  # a new epoch is a fresh, independent draw
    assert not any(flip_choice(3, 0, i, prob=0.0) for i in range(100))
    assert all(flip_choice(3, 0, i, prob=1.0) for i in range(100))


def test_npz_token_dataset_reads_published_layout(tmp_path):
    codes = {}
    for cls in ("n02", "n01"):
        (tmp_path / cls).mkdir()
        for name in ("b", "a"):
            base = np.random.default_rng(len(codes)).integers(0, 16384, (1, 256))
            codes[(cls, name)] = base
            np.savez(tmp_path / cls / f"{name}.npz", indices=base, indices_flip=base + 1)
    ds = NpzTokenDataset(tmp_path, seed=4)
    assert ds.classes == ["n01", "n02"] and ds.labels.tolist() == [0, 0, 1, 1]
    for i, (cls, name) in enumerate([("n01", "a"), ("n01", "b"), ("n02", "a"), ("n02", "b")]):
        c, y = ds[i]
        expect = codes[(cls, name)].reshape(-1) + int(flip_choice(4, 0, i))
        assert c.dtype == torch.long and c.shape == (256,) and torch.equal(c, torch.from_numpy(expect))
    assert any(flip_choice(4, 0, i) for i in range(4)) and not all(flip_choice(4, 0, i) for i in range(4))
    with pytest.raises(FileNotFoundError):
        NpzTokenDataset(tmp_path / "missing")
