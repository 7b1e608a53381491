"""The token cache: contents (codes of image and of flipped image), resume after a real kill, torchrun
sharding, the memory-mapped TokenDataset, and the `lpdgen cache` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import lpdgen
from lpdgen.cli import main
from lpdgen.data import write_idx
from lpdgen.tokenizer import VQConfig, VQTokenizer
from lpdgen.training.token_cache import build_token_cache, code_dtype, shard_ranges
from lpdgen.training.token_datasets import TokenDataset, flip_choice

N_ITEMS, SHARD, BATCH = 22, 4, 2  # 6 shards, the last one partial


class Synthetic(torch.utils.data.Dataset):
    """Deterministic random grayscale images; ``delay`` seconds per item make a build slow enough to kill."""

    def __init__(self, n: int = N_ITEMS, delay: float = 0.0):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 1, 16, 16, generator=g) * 2 - 1
        self.labels = (np.arange(n) * 7) % 5
        self.delay = delay

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        time.sleep(self.delay)
        return self.images[i], int(self.labels[i])


def run_build(tokenizer_path: str, out: str, delay: float = 0.0, **kw) -> Path:
    """One cache build (also the entry point of the subprocess that gets killed)."""
    tok = VQTokenizer.from_checkpoint(tokenizer_path)
    return build_token_cache(tok, Synthetic(delay=delay), out, batch_size=BATCH, shard_size=SHARD, progress=False, **kw)


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory) -> str:
    torch.manual_seed(0)
    return str(VQTokenizer(VQConfig.named("tiny")).save(tmp_path_factory.mktemp("tok") / "tiny"))


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_cache_holds_codes_of_image_and_of_flipped_image(tok_path, tmp_path):
    run_build(tok_path, tmp_path)
    tok = VQTokenizer.from_checkpoint(tok_path)
    data = Synthetic()
    shards = [np.load(tmp_path / f"shard_{k:05d}.npy") for k in range(6)]
    assert [len(s) for s in shards] == [4, 4, 4, 4, 4, 2] and shards[0].dtype == code_dtype(32) == np.uint8
    codes = torch.from_numpy(np.concatenate(shards).astype(np.int64))  # (N, 2, 64)
    assert torch.equal(codes[:, 0], tok.encode(data.images).flatten(1))
    flipped_image_codes = tok.encode(data.images.flip(-1)).flatten(1)
    assert torch.equal(codes[:, 1], flipped_image_codes)
    flipped_grid = tok.encode(data.images).flip(-1).flatten(1)  # what a lazy cache would store instead
    assert not torch.equal(flipped_image_codes, flipped_grid)
    assert np.array_equal(np.load(tmp_path / "labels.npy"), data.labels)


def test_token_dataset_returns_image_or_flip_reproducibly(tok_path, tmp_path):
    run_build(tok_path, tmp_path)
    raw = np.concatenate([np.load(tmp_path / f"shard_{k:05d}.npy") for k in range(6)]).astype(np.int64)
    ds = TokenDataset(tmp_path, seed=11)
    assert len(ds) == N_ITEMS and ds.grid == (8, 8) and ds.codebook_size == 32
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(N_ITEMS):
            codes, label = ds[i]
            assert codes.dtype == torch.long and codes.shape == (64,) and label == Synthetic().labels[i]
            assert torch.equal(codes, torch.from_numpy(raw[i, int(flip_choice(11, epoch, i))]))
        order = torch.randperm(N_ITEMS, generator=torch.Generator().manual_seed(epoch))  # spans all shards
        codes, labels = ds.batch(order)
        assert torch.equal(codes, torch.stack([ds[int(i)][0] for i in order]))
        assert labels.tolist() == [ds[int(i)][1] for i in order]
    flips = [flip_choice(11, 0, i) for i in range(N_ITEMS)]
    assert 0 < sum(flips) < N_ITEMS
    assert all(torch.equal(TokenDataset(tmp_path, flip_prob=0.0)[i][0], torch.from_numpy(raw[i, 0])) for i in range(3))
    with pytest.raises(IndexError):
        ds[N_ITEMS]


@pytest.mark.integration
def test_killed_build_resumes_to_identical_shards(tok_path, tmp_path):
    reference = tmp_path / "reference"
    run_build(tok_path, reference)

    out = tmp_path / "killed"
    src = str(Path(lpdgen.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from test_token_cache import run_build; "
        "run_build(sys.argv[2], sys.argv[3], delay=0.15)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent), tok_path, str(out)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "shard_00000.npy").exists():
            assert proc.poll() is None, "cache build exited before writing its first shard"
            assert time.monotonic() < deadline, "cache build too slow"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # mid-way: the next shard (4 items x 0.15 s) is being encoded
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    written = sorted(p.name for p in out.glob("shard_*.npy"))
    assert 1 <= len(written) < 6, written
    first = (out / "shard_00000.npy").stat()
    (out / ".shard_00005.npy.leftover.tmp").write_bytes(b"half a shard")  # as a kill during a write leaves

    run_build(tok_path, out)  # the rerun finishes the job
    assert _files(out) == _files(reference)  # byte for byte, index and labels included; temp file gone
    assert (out / "shard_00000.npy").stat().st_mtime_ns == first.st_mtime_ns  # finished shards are not redone


def test_torchrun_ranks_split_shards_and_compose(tok_path, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    run_build(tok_path, reference)
    out = tmp_path / "ranks"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run_build(tok_path, out)  # rank 1 of 2 from torchrun's environment: shards 1, 3, 5
    assert sorted(p.name for p in out.glob("shard_*.npy")) == [f"shard_{k:05d}.npy" for k in (1, 3, 5)]
    with pytest.raises(ValueError, match="incomplete"):
        TokenDataset(out)
    run_build(tok_path, out, rank=0, world_size=2)
    assert _files(out) == _files(reference)


def test_rebuild_with_other_settings_is_refused(tok_path, tmp_path):
    run_build(tok_path, tmp_path)
    tok = VQTokenizer.from_checkpoint(tok_path)
    with pytest.raises(ValueError, match="shard_size"):
        build_token_cache(tok, Synthetic(), tmp_path, shard_size=5, progress=False)
    with pytest.raises(ValueError, match="labels"):
        build_token_cache(
            tok, torch.utils.data.TensorDataset(torch.zeros(2, 1, 16, 16)), tmp_path / "x", progress=False
        )
    with pytest.raises(FileNotFoundError, match="lpdgen cache"):
        TokenDataset(tmp_path / "nothing")
    with pytest.raises(ValueError, match="positive"):
        shard_ranges(10, 0)
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]


def test_cache_command_on_fashion_mnist_files(tok_path, tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", (np.arange(10) % 10).astype(np.uint8))
    out = tmp_path / "cache"
    argv = [
        "cache",
        "--data-root",
        str(tmp_path),
        "--split",
        "test",
        "--tokenizer",
        tok_path,
        "--out",
        str(out),
        "--shard-size",
        "4",
        "--batch-size",
        "3",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    ds = TokenDataset(out)
    assert len(ds) == 10 and ds.grid == (16, 16) and ds[9][1] == 9  # 32x32 padded images, 2x downsampling
    assert main(argv) == 0  # rerun of a finished cache: nothing to do
    assert main([*argv[:-4], "--tokenizer", str(tmp_path / "missing.safetensors")]) == 2
