"""Evaluation sampling (per-image seeds, rank split, resume, ADM npz) and metric plumbing (npz vs folder,
reference statistics, cache, clear errors) on tiny models and a tiny stand-in feature network."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lpdgen import LPD, LPDConfig, VQConfig, VQTokenizer
from lpdgen.evaluation.inception import InceptionFeatures
from lpdgen.evaluation.metrics import FIDStatistics, feature_statistics, fid, save_statistics
from lpdgen.evaluation.protocol import (
    SampleConfig,
    batch_ranges,
    cfg_search,
    compute_metrics,
    image_labels,
    merge_parts,
    parts_dir,
    read_image_set,
    sample_to_npz,
    write_png_folder,
)
from lpdgen.pipeline import LPDPipeline
from lpdgen.rng import image_seed
from lpdgen.settings import SamplingConfig


@pytest.fixture(scope="module")
def pipeline() -> LPDPipeline:
    torch.manual_seed(0)
    model = LPD(LPDConfig(width=32, depth=2, heads=4, vocab_size=32, num_classes=3, grid=(4, 4))).eval()
    return LPDPipeline(model, VQTokenizer(VQConfig.named("tiny")).eval())


class _PoolNet(torch.nn.Module):
    """Stand-in feature network: 2x2 average pool of the 299x299 input -> 12-d features (fast FIDs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 2).flatten(1)


@pytest.fixture(scope="module")
def extractor(tmp_path_factory) -> InceptionFeatures:
    path = tmp_path_factory.mktemp("net") / "pool.pt"
    torch.jit.save(torch.jit.script(_PoolNet()), str(path))
    return InceptionFeatures(path, batch_size=16)


def test_image_seed_depends_on_seed_and_index_only():
    assert image_seed(0, 5) == image_seed(0, 5)
    seeds = {image_seed(s, i) for s in range(3) for i in range(100)}
    assert len(seeds) == 300 and all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match=">= 0"):
        image_seed(-1, 0)
    np.testing.assert_array_equal(image_labels(range(7), 3), [0, 1, 2, 0, 1, 2, 0])


def test_batch_ranges_split_every_index_once_over_ranks():
    ranges = [r for rank in range(3) for r in batch_ranges(23, 4, rank, 3)]
    covered = sorted(i for s, e in ranges for i in range(s, e))
    assert covered == list(range(23))
    assert batch_ranges(23, 4, 1, 3) == [(4, 8), (16, 20)]
    with pytest.raises(ValueError):
        batch_ranges(10, 4, 3, 3)


def test_same_index_same_image_for_batch_sizes_1_and_8_and_for_1_or_2_processes(pipeline, tmp_path):
    config = SampleConfig(num_images=10, seed=7, sampling=SamplingConfig(num_inference_steps=5, guidance_scale=2.0))
    one = sample_to_npz(pipeline, tmp_path / "bs1.npz", config, batch_size=1, progress=False)
    eight = sample_to_npz(pipeline, tmp_path / "bs8.npz", config, batch_size=8, progress=False)
    # two processes: rank 1 and rank 0 each make their share; rank 0 merges once everything exists
    assert (
        sample_to_npz(pipeline, tmp_path / "two.npz", config, batch_size=3, rank=1, world_size=2, progress=False)
        is None
    )
    two = sample_to_npz(pipeline, tmp_path / "two.npz", config, batch_size=3, rank=0, world_size=2, progress=False)
    with np.load(one) as a, np.load(eight) as b, np.load(two) as c:
        images = a["arr_0"]
        assert images.dtype == np.uint8 and images.shape == (10, 8, 8, 3)  # 4x4 codes, 2x tokenizer
        np.testing.assert_array_equal(a["arr_1"], np.arange(10) % 3)
        np.testing.assert_array_equal(images, b["arr_0"])
        np.testing.assert_array_equal(images, c["arr_0"])
    assert len({images[i].tobytes() for i in range(10)}) == 10  # distinct seeds, distinct images
    other = sample_to_npz(
        pipeline,
        tmp_path / "seed8.npz",
        SampleConfig(num_images=2, seed=8, sampling=SamplingConfig(num_inference_steps=5, guidance_scale=2.0)),
        progress=False,
    )
    with np.load(other) as d:
        assert not np.array_equal(d["arr_0"], images[:2])


def test_resume_reuses_finished_parts_and_refuses_another_run(pipeline, tmp_path):
    config = SampleConfig(num_images=6, seed=1, sampling=SamplingConfig(num_inference_steps=4))
    out = tmp_path / "run.npz"
    first = sample_to_npz(pipeline, out, config, batch_size=2, progress=False)
    with np.load(first) as f:
        reference = f["arr_0"]
    parts = sorted(parts_dir(out).glob("part-*.npz"))
    assert len(parts) == 3
    kept_mtime = parts[0].stat().st_mtime_ns
    parts[1].unlink()  # an interrupted run: one batch missing
    out.unlink()
    assert merge_parts(out, 6) is None
    again = sample_to_npz(pipeline, out, config, batch_size=4, progress=False)  # another batch size is fine
    with np.load(again) as f:
        np.testing.assert_array_equal(f["arr_0"], reference)
    assert parts[0].stat().st_mtime_ns == kept_mtime  # finished batches were not redone
    with pytest.raises(ValueError, match="different run"):
        sample_to_npz(
            pipeline,
            out,
            SampleConfig(num_images=6, seed=2, sampling=SamplingConfig(num_inference_steps=4)),
            progress=False,
        )


def _random_set(rng, n, size=16):
    return rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)


def test_npz_and_folder_give_the_same_fid_and_reference_stats_match(extractor, tmp_path):
    rng = np.random.default_rng(0)
    ref, samples = _random_set(rng, 40), np.clip(_random_set(rng, 40) * 0.5, 0, 255).astype(np.uint8)
    np.savez(tmp_path / "ref.npz", arr_0=np.repeat(ref[..., None], 3, -1))
    np.savez(tmp_path / "samples.npz", arr_0=np.repeat(samples[..., None], 3, -1))
    write_png_folder(np.repeat(samples[..., None], 3, -1), tmp_path / "samples_png")
    assert read_image_set(tmp_path / "samples_png").shape == (16, 16, 1)  # gray PNGs stay 1 channel

    kw = {"cache_dir": tmp_path / "cache", "progress": False}
    from_npz = compute_metrics(tmp_path / "samples.npz", tmp_path / "ref.npz", extractor, **kw)
    from_folder = compute_metrics(tmp_path / "samples_png", tmp_path / "ref.npz", extractor, **kw)
    assert from_npz["fid"] == from_folder["fid"] > 0
    assert from_npz["num_samples"] == 40 and from_npz["num_reference"] == 40
    assert 0 <= from_npz["precision"] <= 1 and 0 <= from_npz["recall"] <= 1
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # reference statistics cached once

    # an independent FID from the features, and the same via a mu/sigma reference file
    ref_feats = extractor.features([np.repeat(ref[..., None], 3, -1)], progress=False)
    smp_feats = extractor.features([samples], progress=False)
    assert from_npz["fid"] == pytest.approx(fid(feature_statistics(smp_feats), feature_statistics(ref_feats)), rel=1e-9)
    save_statistics(tmp_path / "ref_stats.npz", feature_statistics(ref_feats))
    from_stats = compute_metrics(tmp_path / "samples.npz", tmp_path / "ref_stats.npz", extractor, **kw)
    assert from_stats["fid"] == pytest.approx(from_npz["fid"], rel=1e-9)
    assert "precision" not in from_stats  # statistics only: no features for precision/recall


def test_metrics_errors_are_clear(extractor, tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "small.npz", arr_0=_random_set(rng, 30, 16))
    np.savez(tmp_path / "big.npz", arr_0=_random_set(rng, 30, 32))
    kw = {"cache_dir": tmp_path / "cache", "progress": False}
    with pytest.raises(ValueError, match="resolution mismatch: samples are 16x16, reference images are 32x32"):
        compute_metrics(tmp_path / "small.npz", tmp_path / "big.npz", extractor, **kw)
    assert (
        compute_metrics(tmp_path / "small.npz", tmp_path / "big.npz", extractor, allow_resolution_mismatch=True, **kw)[
            "fid"
        ]
        > 0
    )
    np.savez(tmp_path / "stats2048.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ValueError, match="dimension 2048, the feature network gives 12"):
        compute_metrics(tmp_path / "small.npz", tmp_path / "stats2048.npz", extractor, **kw)
    np.savez(tmp_path / "float.npz", arr_0=np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="must be uint8"):
        read_image_set(tmp_path / "float.npz")
    np.savez(tmp_path / "nothing.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="no 'arr_0'"):
        read_image_set(tmp_path / "nothing.npz")
    folder = tmp_path / "mixed"
    write_png_folder(np.zeros((2, 8, 8, 3), np.uint8), folder)
    write_png_folder(np.zeros((1, 9, 9, 3), np.uint8), folder / "sub")
    with pytest.raises(ValueError, match="share one resolution"):
        read_image_set(folder).all()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        read_image_set(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        read_image_set(tmp_path / "missing.npz")


def test_cfg_search_reports_one_fid_per_scale(pipeline, extractor, tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "ref.npz", arr_0=_random_set(rng, 20, 8))  # the tiny tokenizer makes 8x8 images
    rows = cfg_search(
        pipeline,
        [1.0, 3.0],
        SampleConfig(num_images=15, sampling=SamplingConfig(num_inference_steps=4)),
        tmp_path / "sweep",
        tmp_path / "ref.npz",
        extractor,
        batch_size=8,
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert [r["cfg"] for r in rows] == [1.0, 3.0]
    assert all(np.isfinite(r["fid"]) and r["num_samples"] == 15 for r in rows)
    assert rows[0]["fid"] != rows[1]["fid"]


def test_cli_sample_then_metrics(pipeline, extractor, tmp_path, capsys, caplog):
    from lpdgen.cli import main

    ckpt = pipeline.model.save(tmp_path / "lpd")
    vq = pipeline.tokenizer.save(tmp_path / "vq")
    out = tmp_path / "s.npz"
    args = [
        "eval",
        "sample",
        "--checkpoint",
        str(ckpt),
        "--tokenizer",
        str(vq),
        "--num-images",
        "6",
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--png-dir",
        str(tmp_path / "png"),
    ]
    assert main(args) == 0
    direct = sample_to_npz(
        pipeline,
        tmp_path / "direct.npz",
        SampleConfig(num_images=6, sampling=SamplingConfig(num_inference_steps=4)),
        progress=False,
    )
    with np.load(out) as a, np.load(direct) as b:
        np.testing.assert_array_equal(a["arr_0"], b["arr_0"])
    assert len(list((tmp_path / "png").glob("*.png"))) == 6

    rng = np.random.default_rng(3)
    np.savez(tmp_path / "ref.npz", arr_0=_random_set(rng, 20, 8))
    metrics = [
        "eval",
        "metrics",
        str(out),
        "--ref",
        str(tmp_path / "ref.npz"),
        "--inception",
        str(extractor.path),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
        str(tmp_path / "m.json"),
    ]
    assert main(metrics) == 0
    assert "fid" in capsys.readouterr().out and (tmp_path / "m.json").is_file()
    # 6 images for 12-d features: the promised warning, as one log line (docs/evaluation.md)
    assert "only 6 images for 12-d features" in caplog.text and "FID is biased upwards" in caplog.text
    missing = ["eval", "metrics", str(out), "--ref", str(tmp_path / "ref.npz"), "--inception", str(tmp_path / "no.pt")]
    assert main(missing) == 2
    assert "FID Inception weights not found" in capsys.readouterr().err


@pytest.mark.integration
def test_torchrun_two_processes_write_the_same_npz_as_one(pipeline, tmp_path):
    """Two real processes (torchrun, gloo; ~20 s, mostly start-up): same file as one process."""
    ckpt, vq = pipeline.model.save(tmp_path / "lpd"), pipeline.tokenizer.save(tmp_path / "vq")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    args = [
        "-m",
        "lpdgen.cli",
        "eval",
        "sample",
        "--checkpoint",
        str(ckpt),
        "--tokenizer",
        str(vq),
        "--device",
        "cpu",
        "--num-images",
        "10",
        "--steps",
        "4",
        "--cfg",
        "2.0",
        "--batch-size",
        "3",
        "--out",
        str(tmp_path / "two.npz"),
    ]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            *args,
        ],
        env=env,
        check=True,
        timeout=600,
    )
    one = sample_to_npz(
        pipeline,
        tmp_path / "one.npz",
        SampleConfig(num_images=10, sampling=SamplingConfig(num_inference_steps=4, guidance_scale=2.0)),
        batch_size=8,
        progress=False,
    )
    with np.load(one) as a, np.load(tmp_path / "two.npz") as b:
        np.testing.assert_array_equal(a["arr_0"], b["arr_0"])
        np.testing.assert_array_equal(a["arr_1"], b["arr_1"])


def test_adm_style_reference_uses_its_own_statistics_and_its_images_for_precision_recall(extractor, tmp_path):
    rng = np.random.default_rng(4)
    ref, samples = _random_set(rng, 30), _random_set(rng, 30)
    stats = feature_statistics(extractor.features([ref], progress=False))
    shifted_mu = stats.mu + 1.0  # statistics from "another evaluator": must be used as they are
    np.savez(tmp_path / "adm.npz", arr_0=ref, mu=shifted_mu, sigma=stats.sigma)
    np.savez(tmp_path / "samples.npz", arr_0=samples)
    out = compute_metrics(
        tmp_path / "samples.npz", tmp_path / "adm.npz", extractor, cache_dir=tmp_path / "c", progress=False
    )
    sample_stats = feature_statistics(extractor.features([samples], progress=False))
    assert out["fid"] == pytest.approx(fid(sample_stats, FIDStatistics(shifted_mu, stats.sigma)), rel=1e-9)
    assert "precision" in out and "recall" in out  # features from the reference's own images


class _PoolNetWithLogits(torch.nn.Module):
    """Stand-in for an Inception that also returns class logits: (12-d features, 4-way logits)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = F.adaptive_avg_pool2d(x, 2).flatten(1)
        return feats, 20 * feats[:, :4]


def test_inception_score_is_reported_when_the_network_gives_logits(extractor, tmp_path):
    from lpdgen.evaluation.metrics import inception_score

    path = tmp_path / "with_logits.pt"
    torch.jit.save(torch.jit.script(_PoolNetWithLogits()), str(path))
    net = InceptionFeatures(path, batch_size=7)
    rng = np.random.default_rng(5)
    samples, ref = _random_set(rng, 30), _random_set(rng, 30)
    np.savez(tmp_path / "s.npz", arr_0=samples)
    np.savez(tmp_path / "r.npz", arr_0=ref)
    out = compute_metrics(tmp_path / "s.npz", tmp_path / "r.npz", net, cache_dir=tmp_path / "c", progress=False)
    feats, logits = net.extract([samples], progress=False)
    np.testing.assert_allclose(logits, 20 * feats[:, :4])
    assert out["inception_score"] == pytest.approx(inception_score(logits)[0], rel=1e-12) and out["inception_score"] > 1
    assert "inception_score" not in compute_metrics(
        tmp_path / "s.npz", tmp_path / "r.npz", extractor, cache_dir=tmp_path / "c", progress=False
    )
