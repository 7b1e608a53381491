"""torchrun on CPU (gloo): two processes train exactly like one with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_worker import assert_same_parameters

from lpdgen.distributed import all_gather_objects, all_reduce_mean, barrier, init_distributed, is_main, wrap_model
from lpdgen.model import LPD

WORKER = Path(__file__).with_name("train_worker.py")
STEPS = 10
TOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    src = str(Path(__file__).parents[1] / "src")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }


def _run(out: Path, nproc: int, parallel: str = "ddp", *extra: str) -> subprocess.Popen:
    args = [
        str(WORKER),
        "--out-dir",
        str(out),
        "--steps",
        str(STEPS),
        "--checkpoint-every",
        str(STEPS // 2),
        "--parallel",
        parallel,
        *extra,
    ]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            *args,
        ]
    else:
        cmd = [sys.executable, *args]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


def test_plain_process_helpers_are_no_ops():
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.enabled, info.is_main) == (0, 1, False, True)
    assert is_main()
    barrier()
    x = torch.tensor([1.0, 3.0])
    assert torch.equal(all_reduce_mean(x), x)
    assert all_gather_objects({"a": 1}) == [{"a": 1}]
    module = torch.nn.Linear(2, 2)
    assert wrap_model(module, info, "fsdp") is module
    with pytest.raises(ValueError, match="unknown parallel mode"):
        wrap_model(module, info, "zero3")


@pytest.mark.integration
def test_two_gloo_processes_equal_one_process(tmp_path):
    """DDP (with 2 micro-batches per process) and FSDP over 2 CPU processes vs 1 process, global batch 8,
    label drop on, dropout off."""
    runs = {name: tmp_path / name for name in ("single", "ddp", "fsdp")}
    procs = [_run(runs["single"], 1), _run(runs["ddp"], 2, "ddp", "--accum-steps", "2"), _run(runs["fsdp"], 2, "fsdp")]
    for p in procs:
        _finish(p)
    ref = LPD.from_checkpoint(runs["single"] / "lpd.safetensors").state_dict()
    width = LPD.from_checkpoint(runs["single"] / "lpd.safetensors").cfg.width
    for name in ("ddp", "fsdp"):
        assert len(_losses(runs[name])) == STEPS
        assert _losses(runs[name]) == pytest.approx(_losses(runs["single"]), abs=TOL), name
        got = LPD.from_checkpoint(runs[name] / "lpd.safetensors").state_dict()
        assert_same_parameters(ref, got, width, TOL)

    # resume under FSDP: sharded model and optimizer state gathered into the checkpoint and scattered back
    fsdp = runs["fsdp"]
    full_log = _losses(fsdp)
    for stale in ("ckpt_00000010.pt", "lpd.safetensors", "lpd.json"):
        (fsdp / stale).unlink()
    _finish(_run(fsdp, 2, "fsdp", "--resume", "auto"))
    assert _losses(fsdp) == full_log
