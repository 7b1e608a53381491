"""Training engine: recipe pieces against naive references, bad input, learning on real tokens,
exact resume after kill -9, export and --init."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_worker import assert_same_parameters, patch_tokens, tiny_model

from lpdgen.distributed import DistInfo
from lpdgen.model import LPD, LPDConfig
from lpdgen.orders import all_group_sizes
from lpdgen.runs import list_checkpoints, load_training_checkpoint
from lpdgen.training.config import TrainConfig
from lpdgen.training.draws import batch_position, draw_schedule, epoch_permutation, rank_batch, sample_randomness
from lpdgen.training.schedule import learning_rate, param_groups, resolve_schedules
from lpdgen.training.token_datasets import TensorTokens
from lpdgen.training.trainer import Trainer

WORKER = Path(__file__).with_name("train_worker.py")


@pytest.fixture(scope="module")
def tokens() -> TensorTokens:
    return patch_tokens(512)


def small_cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(
        out_dir=str(tmp_path / "run"),
        global_batch=8,
        steps=6,
        lr_unit="step",
        warmup=2,
        decay_start=3,
        base_lr=0.05,
        checkpoint_every=3,
        log_every=1,
        device="cpu",
        tensorboard=False,
    )
    return TrainConfig(**{**base, **kw})


# --- the recipe ---------------------------------------------------------------------------------------


def test_learning_rate_warmup_constant_cosine():
    kw = dict(peak=1.0, min_lr=0.1, warmup=50, decay_start=400, end=450)
    assert learning_rate(0, **kw) == 0.0
    assert learning_rate(25, **kw) == pytest.approx(0.5)
    assert learning_rate(50, **kw) == 1.0
    assert learning_rate(399.9, **kw) == 1.0
    for t in (400, 410, 425, 440, 450):  # naive cosine from peak at 400 to min_lr at 450
        expected = 0.1 + 0.9 * (1 + math.cos(math.pi * (t - 400) / 50)) / 2
        assert learning_rate(t, **kw) == pytest.approx(expected)
    assert learning_rate(500, **kw) == pytest.approx(0.1)
    lrs = [learning_rate(t, **kw) for t in range(400, 451)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_lr_scales_with_global_batch():
    assert TrainConfig(global_batch=2048).peak_lr == pytest.approx(8e-4)
    assert TrainConfig(global_batch=256).peak_lr == pytest.approx(1e-4)


def test_param_groups_no_decay_on_biases_and_1d():
    model = LPD(LPDConfig(width=16, depth=1, heads=2, vocab_size=8, num_classes=3, grid=(2, 2)))
    decay, no_decay = param_groups(model, 0.02)
    assert decay["weight_decay"] == 0.02 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    plain = {names[id(p)] for p in no_decay["params"]}
    assert decayed | plain == set(names.values()) and not decayed & plain
    assert {"blocks.0.attn.qkv.weight", "token_emb.weight", "pos_embed", "head.weight", "fake_latent"} <= decayed
    assert {"blocks.0.attn.qkv.bias", "blocks.0.norm1.weight", "norm.bias", "z_proj_ln.weight"} <= plain
    assert all(p.dim() >= 2 for p in decay["params"])


# --- data order and per-step randomness ---------------------------------------------------------------


def test_epoch_permutation_covers_data_and_depends_on_seed_and_epoch():
    p = epoch_permutation(100, seed=3, epoch=0)
    assert sorted(p.tolist()) == list(range(100))
    assert torch.equal(p, epoch_permutation(100, seed=3, epoch=0))
    assert not torch.equal(p, epoch_permutation(100, seed=3, epoch=1))
    assert not torch.equal(p, epoch_permutation(100, seed=4, epoch=0))


def test_rank_slices_concatenate_to_the_single_process_batch():
    for step in (0, 5, 12, 13):  # 12 and 13 are in the second epoch of 100 items at batch 8
        whole, pos = rank_batch(step, 100, 8, 0, 1, seed=1)
        parts = [rank_batch(step, 100, 8, r, 4, seed=1) for r in range(4)]
        assert torch.equal(torch.cat([i for i, _ in parts]), whole)
        assert torch.equal(torch.cat([p for _, p in parts]), pos)
    epoch, i = batch_position(13, 100, 8)
    assert (epoch, i) == (1, 1)
    batches = torch.cat([rank_batch(s, 100, 8, 0, 1, seed=1)[0] for s in range(12)])
    assert len(set(batches.tolist())) == 96  # one epoch: no item twice, last partial batch dropped
    with pytest.raises(ValueError, match="not divisible"):
        rank_batch(0, 100, 8, 0, 3, seed=1)


def test_sample_randomness_is_per_sample_not_per_split():
    pos = torch.arange(8)
    orders, null = sample_randomness(0, 7, pos, 49, 0.5)
    assert all(sorted(r) == list(range(49)) for r in orders.tolist())
    o1, n1 = sample_randomness(0, 7, pos[:3], 49, 0.5)
    o2, n2 = sample_randomness(0, 7, pos[3:], 49, 0.5)
    assert torch.equal(torch.cat([o1, o2]), orders) and torch.equal(torch.cat([n1, n2]), null)
    assert not torch.equal(sample_randomness(0, 8, pos, 49, 0.5)[0], orders)
    _, many = sample_randomness(0, 0, torch.arange(4000), 4, 0.1)
    assert 0.08 < many.float().mean().item() < 0.12  # label drop probability 0.1


def test_schedule_draw_is_uniform_and_shared():
    schedules = all_group_sizes(256)
    counts = torch.zeros(len(schedules))
    index = {tuple(s): k for k, s in enumerate(schedules)}
    for step in range(2700):
        counts[index[draw_schedule(schedules, 5, step)]] += 1
    expected = 2700 / len(schedules)
    assert ((counts - expected).abs() < 5 * math.sqrt(expected)).all(), counts
    assert draw_schedule(schedules, 5, 11) == draw_schedule(schedules, 5, 11)


def test_resolve_schedules(tmp_path):
    assert resolve_schedules("auto", 256) == all_group_sizes(256)
    assert [sum(s) for s in resolve_schedules("4,8", 49)] == [49, 49]
    with pytest.raises(ValueError, match="do not fit the token grid"):
        resolve_schedules("8,64", 49)
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps([[1, 2, 3]]))
    with pytest.raises(ValueError, match="does not match the 49-token grid"):
        resolve_schedules(str(bad), 49)


# --- bad input: clear errors before any work ----------------------------------------------------------


def test_bad_input_fails_before_work(tmp_path, tokens):
    cfg = small_cfg(tmp_path)
    out = Path(cfg.out_dir)
    wrong_grid = LPDConfig(width=32, depth=1, heads=2, vocab_size=8, num_classes=10, grid=(8, 8))
    with pytest.raises(ValueError, match="49 tokens but the model's grid"):
        Trainer(wrong_grid, cfg, tokens)
    with pytest.raises(ValueError, match="outside the model vocabulary"):
        Trainer(LPDConfig(width=32, depth=1, heads=2, vocab_size=4, num_classes=10, grid=(7, 7)), cfg, tokens)
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        Trainer(tiny_model(), cfg, tokens, dist_info=DistInfo(world_size=3))
    with pytest.raises(ValueError, match="do not fit the token grid"):
        Trainer(tiny_model(), small_cfg(tmp_path, schedules="4,64"), tokens)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        Trainer(tiny_model(), small_cfg(tmp_path, global_batch=1024), tokens)
    assert not out.exists()


def test_bf16_autocast_on_cpu_tracks_fp32(tmp_path, tokens):
    """CPU bf16 autocast (fast on AVX512-BF16 / AMX CPUs) computes the same loss as fp32 to bf16 precision,
    while the weights and the optimizer stay fp32."""
    losses = {}
    for precision in ("fp32", "bf16"):
        trainer = Trainer(tiny_model(), small_cfg(tmp_path / precision, precision=precision, steps=2), tokens)
        assert trainer.amp == (precision == "bf16")
        losses[precision] = [float(trainer.train_step(s)[0]) for s in range(2)]
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert losses["bf16"] != losses["fp32"]  # autocast really ran in bf16
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)


def test_resume_from_a_different_run_is_refused(tmp_path, tokens):
    Trainer(tiny_model(), small_cfg(tmp_path, steps=3), tokens).fit()
    ckpt = list_checkpoints(tmp_path / "run")[-1]
    other = dataclasses.replace(tiny_model(), width=64)
    with pytest.raises(ValueError, match=r"different run:\n  width: 32 -> 64$"):
        Trainer(other, small_cfg(tmp_path, steps=3, resume=str(ckpt)), tokens)
    with pytest.raises(ValueError, match=r"different run:\n  global_batch: 8 -> 16\n  steps: 3 -> 6$"):
        Trainer(tiny_model(), small_cfg(tmp_path, resume=str(ckpt), global_batch=16), tokens)
    with pytest.raises(ValueError, match="dataset size: 512 -> 256"):
        Trainer(tiny_model(), small_cfg(tmp_path, steps=3, resume=str(ckpt)), patch_tokens(256))
    with pytest.raises(FileNotFoundError):
        Trainer(tiny_model(), small_cfg(tmp_path, resume=str(tmp_path / "nope.pt")), tokens)
    # what may change between a run and its resumption does not block it
    resumed = Trainer(tiny_model(), small_cfg(tmp_path, steps=3, resume=str(ckpt), log_every=2, keep_last=1), tokens)
    assert resumed.step == 3


# --- learning, outputs --------------------------------------------------------------------------------


def test_loss_decreases_on_real_tokens(tmp_path, tokens):
    """Fashion-MNIST patch tokens, tiny model: the mean loss of each 20-step window beats the previous."""
    cfg = small_cfg(
        tmp_path, global_batch=16, steps=100, warmup=10, decay_start=100, base_lr=0.1, checkpoint_every=100, log_every=1
    )
    Trainer(tiny_model(), cfg, tokens).fit()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 100
    windows = [sum(losses[i : i + 20]) / 20 for i in range(0, 100, 20)]
    assert all(b < a for a, b in zip(windows, windows[1:])), windows
    assert windows[-1] < 0.8 * math.log(8)  # well below the uniform guess over 8 codes


def test_export_checkpoints_samples_and_keep_last(tmp_path, tokens):
    cfg = small_cfg(tmp_path, steps=8, checkpoint_every=2, keep_last=2, sample_every=4, sample_count=4, sample_steps=5)
    trainer = Trainer(tiny_model(), cfg, tokens)
    summary = trainer.fit()
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["ckpt_00000006.pt", "ckpt_00000008.pt"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000004.png", "step_00000008.png"]
    loaded = LPD.from_checkpoint(summary["weights"])
    assert loaded.cfg == trainer.model.cfg
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    ckpt = load_training_checkpoint(run / "ckpt_00000008.pt")  # weights_only=True inside
    assert ckpt["step"] == 8 and (ckpt["epoch"], ckpt["batch_in_epoch"]) == batch_position(8, 512, 8)
    assert set(ckpt["rng"][0]) == {"torch_cpu"}


def test_init_from_published_format_with_pos_embed_resize(tmp_path, tokens):
    """A {"model": state_dict} .pth of a 4x4-grid model initialises a 7x7-grid run (pos_embed resized)."""
    src = LPD(LPDConfig(width=32, depth=2, heads=2, vocab_size=8, num_classes=10, grid=(4, 4)))
    pth = tmp_path / "published.pth"
    torch.save({"model": src.state_dict()}, pth)
    trainer = Trainer(tiny_model(), small_cfg(tmp_path, init=str(pth)), tokens)
    assert torch.equal(trainer.model.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    assert trainer.model.pos_embed.shape == (1, 50, 32)
    assert torch.equal(trainer.model.pos_embed[0, 0], src.pos_embed[0, 0])  # class slot kept


# --- exact resume after kill -9 -----------------------------------------------------------------------


def _worker(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(WORKER),
        "--out-dir",
        str(out),
        "--steps",
        "24",
        "--checkpoint-every",
        "6",
        "--dropout",
        "0.1",
        *extra,
    ]


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


@pytest.mark.integration
def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = subprocess.Popen(
        _worker(killed, "--delay", "0.15"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120  # killed at its first checkpoint, whatever the load (0.9 s to the next one)
    while not list_checkpoints(killed) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(_worker(straight), env=env, check=True, capture_output=True)
    survivors = list_checkpoints(killed)
    assert survivors and survivors[-1].name != "ckpt_00000024.pt", "the run ended before it could be killed"
    for ckpt in survivors:  # whatever was on disk at the kill is complete
        load_training_checkpoint(ckpt)
    resumed_from = load_training_checkpoint(survivors[-1])["step"]
    subprocess.run(_worker(killed, "--resume", "auto"), env=env, check=True, capture_output=True)

    expected, got = _losses(straight), _losses(killed)
    assert sorted(got) == list(range(1, 25))
    assert [got[s] for s in range(1, 25)] == [expected[s] for s in range(1, 25)]  # bit-exact, after resume too
    assert resumed_from < 24
    a = LPD.from_checkpoint(straight / "lpd.safetensors").state_dict()
    b = LPD.from_checkpoint(killed / "lpd.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- the command line ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_cache(tmp_path_factory) -> Path:
    """A real `lpdgen cache` directory: 64 Fashion-MNIST images (and flips) through a small VQ tokenizer."""
    from torch.utils.data import Subset

    from lpdgen.data import FashionMNIST
    from lpdgen.tokenizer import VQConfig, VQTokenizer
    from lpdgen.training.token_cache import build_token_cache

    torch.manual_seed(0)
    images = FashionMNIST()
    subset = Subset(images, range(64))
    subset.labels = images.labels[:64]
    out = tmp_path_factory.mktemp("cache")
    build_token_cache(VQTokenizer(VQConfig.named("fmnist")), subset, out, batch_size=32, progress=False)
    return out


def test_cli_trains_on_a_token_cache_and_resumes(tmp_path, token_cache):
    from lpdgen.cli import main

    model = tmp_path / "model.json"
    model.write_text(json.dumps(dict(width=32, depth=1, heads=2, vocab_size=512, num_classes=10, grid=[8, 8])))
    args = [
        "train",
        "--data",
        str(token_cache),
        "--model",
        str(model),
        "--out-dir",
        str(tmp_path / "run"),
        "--global-batch",
        "16",
        "--lr-unit",
        "step",
        "--warmup",
        "1",
        "--decay-start",
        "2",
        "--checkpoint-every",
        "2",
        "--log-every",
        "1",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-tensorboard",
    ]
    assert main([*args, "--steps", "4"]) == 0
    assert (tmp_path / "run" / "lpd.safetensors").is_file()
    first = _losses(tmp_path / "run")
    assert sorted(first) == [1, 2, 3, 4]
    (tmp_path / "run" / "ckpt_00000004.pt").unlink()  # as if killed between the checkpoints of steps 2 and 4
    assert main([*args, "--steps", "4", "--resume", "auto"]) == 0
    assert _losses(tmp_path / "run") == first


def test_cli_bad_input_is_a_clean_error(tmp_path, token_cache, capsys):
    from lpdgen.cli import main

    base = ["train", "--out-dir", str(tmp_path / "run"), "--device", "cpu", "--no-tensorboard"]
    assert main([*base, "--data", str(tmp_path / "missing")]) == 2
    assert "dataset not found" in capsys.readouterr().err
    assert main([*base, "--data", str(token_cache), "--global-batch", "16"]) == 2  # lpd-l: 16x16 grid, 8x8 codes
    assert "64 tokens but the model's grid (16, 16) has 256" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_trainer_lr_follows_the_published_epoch_schedule(tmp_path, tokens):
    """512 items / batch 8 = 64 steps per epoch; 50 warm-up epochs, constant to 400, cosine to 450."""
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), global_batch=8, device="cpu", tensorboard=False)
    trainer = Trainer(tiny_model(), cfg, tokens)
    peak = 1e-4 * 8 / 256
    assert trainer.total_steps == 450 * 64
    assert trainer.lr_at(0) == 0.0
    assert trainer.lr_at(25 * 64) == pytest.approx(peak / 2)
    assert trainer.lr_at(50 * 64) == trainer.lr_at(399 * 64) == pytest.approx(peak)
    assert trainer.lr_at(425 * 64) == pytest.approx((peak + 1e-5) / 2)
    assert trainer.lr_at(450 * 64 - 1) == pytest.approx(1e-5, rel=1e-3)


def test_gradient_accumulation_takes_the_same_steps(tmp_path, tokens):
    """4 micro-batches of 4 = one batch of 16 (same samples, orders, label drops; sums in another order)."""
    whole = Trainer(tiny_model(), small_cfg(tmp_path / "a", global_batch=16), tokens)
    whole.fit()
    split = Trainer(tiny_model(), small_cfg(tmp_path / "b", global_batch=16, accum_steps=4), tokens)
    split.fit()
    assert_same_parameters(whole.model.state_dict(), split.model.state_dict(), width=32, tol=1e-5)
    logs = [
        [json.loads(line) for line in (d / "run" / "log.jsonl").read_text().splitlines()]
        for d in (tmp_path / "a", tmp_path / "b")
    ]
    for key in ("loss", "grad_norm"):  # the step's mean loss and its gradient, not a sum over micro-batches
        assert [r[key] for r in logs[1]] == pytest.approx([r[key] for r in logs[0]], abs=1e-5)
    with pytest.raises(ValueError, match="not divisible by accum_steps 3"):
        Trainer(tiny_model(), small_cfg(tmp_path / "c", global_batch=16, accum_steps=3), tokens)
