"""The VQ tokenizer: published VQ-16 layout, quantizer maths, checkpoint loading, training and resume,
and the quality of the shipped Fashion-MNIST tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lpdgen.data import FashionMNIST
from lpdgen.images import float_to_uint8, uint8_to_float
from lpdgen.io import save_safetensors
from lpdgen.tokenizer import AttnBlock, VectorQuantizer, VQConfig, VQTokenizer, load_tokenizer
from lpdgen.training.tokenizer_trainer import (
    TokenizerTrainConfig,
    batch_indices,
    codebook_stats,
    evaluate_tokenizer,
    psnr,
    restart_dead_codes,
    train_tokenizer,
)

SHAPES = Path(__file__).parent / "data" / "llamagen_vq16_state_dict_shapes.json"
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def tiny(seed: int = 0) -> VQTokenizer:
    torch.manual_seed(seed)
    return VQTokenizer(VQConfig.named("tiny")).eval()


def test_vq16_state_dict_matches_published_names_and_shapes():
    expected = json.loads(SHAPES.read_text())["state_dict"]
    with torch.device("meta"):  # 72M parameters: shapes only
        model = VQTokenizer()
    found = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert found == expected
    assert list(found) == list(expected)  # same order as the published checkpoint
    assert VQConfig().downsample == 16 and VQConfig().grid == (16, 16)


def test_config_rejects_widths_not_divisible_by_groups():
    with pytest.raises(ValueError, match="norm_groups"):
        VQConfig(base_channels=24)
    with pytest.raises(ValueError, match="unknown tokenizer config"):
        VQConfig.named("vq-32")


def test_quantizer_picks_cosine_nearest_entry_like_brute_force():
    torch.manual_seed(0)
    q = VectorQuantizer(VQConfig(codebook_size=64, codebook_dim=8, base_channels=32))
    q.embedding.weight.data = torch.randn(64, 8) * torch.rand(64, 1) * 3  # unnormalised rows on purpose
    z = torch.randn(3, 8, 5, 4) * 7
    codes = q.nearest(z)
    e = q.embedding.weight.detach().double().numpy()
    zz = z.double().numpy()
    for b in range(3):
        for i in range(5):
            for j in range(4):
                v = zz[b, :, i, j]
                cos = [float(v @ e[k]) / (np.linalg.norm(v) * np.linalg.norm(e[k])) for k in range(64)]
                assert codes[b, i, j].item() == int(np.argmax(cos))
    looked = q.lookup(codes)
    assert torch.allclose(looked.norm(dim=1), torch.ones(3, 5, 4), atol=1e-5)


def test_quantizer_straight_through_and_losses():
    torch.manual_seed(1)
    q = VectorQuantizer(VQConfig(codebook_size=16, codebook_dim=4, base_channels=32)).train()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = q(z)
    assert torch.allclose(out.z_q, q.lookup(out.codes), atol=1e-6)  # forward value = the entries
    zn = F.normalize(z.detach(), dim=1)
    assert torch.allclose(out.commit_loss, ((zn - q.lookup(out.codes)) ** 2).mean())
    out.z_q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # gradients reach the encoder side
    assert (q.codebook_used[-18:].long() == out.codes.flatten()).all()  # usage window records the codes
    with pytest.raises(ValueError, match="lie in"):
        q.lookup(torch.full((1, 2, 2), 16))


def test_attention_block_matches_llamagen_bmm_formula():
    torch.manual_seed(2)
    attn = AttnBlock(32, groups=8)
    x = torch.randn(2, 32, 3, 5)
    h = attn.norm(x)
    q, k, v = attn.q(h), attn.k(h), attn.v(h)
    b, c, hh, ww = q.shape
    w_ = torch.bmm(q.reshape(b, c, hh * ww).permute(0, 2, 1), k.reshape(b, c, hh * ww)) * c**-0.5
    w_ = torch.softmax(w_, dim=2)
    ref = torch.bmm(v.reshape(b, c, hh * ww), w_.permute(0, 2, 1)).reshape(b, c, hh, ww)
    assert torch.allclose(attn(x), x + attn.proj_out(ref), atol=1e-5)


def test_encode_decode_shapes_and_bad_input():
    model = tiny()
    x = torch.rand(3, 1, 16, 24) * 2 - 1
    codes = model.encode(x)
    assert codes.shape == (3, 8, 12) and codes.dtype == torch.long
    assert model.decode(codes).shape == (3, 1, 16, 24)
    assert model.decode(codes[:, :, :8].reshape(3, 64)).shape == (3, 1, 16, 16)  # flat square grids too
    with pytest.raises(ValueError, match="images must be"):
        model.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiple of the downsampling"):
        model.encode(torch.zeros(1, 1, 15, 16))


def test_uint8_helpers_round_trip_and_pil():
    arr = np.random.default_rng(0).integers(0, 256, (2, 16, 16), dtype=np.uint8)
    x = uint8_to_float(arr)
    assert x.shape == (2, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(float_to_uint8(x)[..., 0], arr)
    model = tiny()
    images = model.decode_pil(model.encode_uint8(arr))
    assert images[0].size == (16, 16) and images[0].mode == "L"
    assert torch.equal(model.encode_pil(images), model.encode_uint8(np.stack([np.asarray(im) for im in images])))


def test_from_checkpoint_reads_published_format_and_rejects_mismatch(tmp_path):
    model = tiny(seed=3)
    torch.save({"model": model.state_dict()}, tmp_path / "vq.pt")
    loaded = VQTokenizer.from_checkpoint(tmp_path / "vq.pt", VQConfig.named("tiny"))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    path = model.save(tmp_path / "own")  # safetensors + JSON config: loads without naming the config
    assert path.name == "own.safetensors" and (tmp_path / "own.json").is_file()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.equal(load_tokenizer(str(path)).encode(x), model.encode(x))
    bad = dict(model.state_dict())
    bad["quant_conv.weight"] = torch.zeros(1, 1, 1, 1)
    del bad["decoder.conv_out.bias"]
    torch.save({"model": bad}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"(?s)missing keys: decoder.conv_out.bias.*wrong shapes: quant_conv.weight"):
        VQTokenizer.from_checkpoint(tmp_path / "bad.pt", VQConfig.named("tiny"))
    with pytest.raises(ValueError, match="does not match"):  # no sidecar config -> VQ-16, which this is not
        VQTokenizer.from_checkpoint(tmp_path / "vq.pt")


def test_codebook_stats_and_psnr_by_hand():
    stats = codebook_stats(torch.tensor([0, 0, 1, 3]), 8)
    p = np.array([0.5, 0.25, 0.25])
    assert stats["usage"] == 3 / 8
    assert stats["perplexity"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())))
    a = torch.zeros(1, 1, 2, 2)
    b = a.clone()
    b[0, 0, 0, 0] = 0.2  # 0.1 on the [0, 1] scale, one of 4 pixels: mse 0.0025 -> 26.02 dB
    assert psnr(b, a).item() == pytest.approx(10 * np.log10(1 / 0.0025), rel=1e-5)


def test_restart_dead_codes_replaces_only_unused_entries():
    torch.manual_seed(4)
    q = VectorQuantizer(VQConfig.named("tiny"))
    before = q.embedding.weight.detach().clone()
    q.codebook_used.fill_(3.0)
    q.codebook_used[:10] = 5.0  # entries 3 and 5 used; the other 30 are dead
    z = F.normalize(torch.randn(2, 4, 4, 4), dim=1)
    n = restart_dead_codes(q, z, torch.Generator().manual_seed(0))
    assert n == 30
    w = q.embedding.weight.detach()
    assert torch.equal(w[[3, 5]], before[[3, 5]])
    changed = [k for k in range(32) if k not in (3, 5)]
    assert not torch.isclose(w[changed], before[changed]).all(dim=1).any()
    assert torch.allclose(w[changed].norm(dim=1), torch.ones(30), atol=1e-5)
    # every restarted entry sits next to one of the encoder outputs it was drawn from
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    assert (torch.cdist(w[changed], flat).min(dim=1).values < 0.05).all()


class _Blobs(torch.utils.data.Dataset):
    """Tiny synthetic grayscale images: a bright square at a per-item position."""

    def __init__(self, n: int = 48, size: int = 16):
        g = torch.Generator().manual_seed(0)
        self.images = torch.full((n, 1, size, size), -1.0)
        for i in range(n):
            r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
            self.images[i, :, r : r + 6, c : c + 6] = 1.0
        self.labels = np.arange(n) % 3

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def test_evaluate_tokenizer_matches_direct_computation():
    model, data = tiny(seed=5), _Blobs(n=20)
    m = evaluate_tokenizer(model, data, batch_size=7, progress=False)  # uneven batches
    x = data.images
    codes = model.encode(x)
    recon = model.decode(codes)
    assert m["psnr"] == pytest.approx(psnr(recon, x).mean().item(), rel=1e-5)
    assert m["round_trip"] == pytest.approx((model.encode(recon.clamp(-1, 1)) == codes).float().mean().item())
    assert m["usage"] == codebook_stats(codes, 32)["usage"] and m["images"] == 20


def test_batch_indices_are_epoch_permutations():
    seen = torch.cat([batch_indices(s, 10, 3, seed=5) for s in range(3)])
    assert sorted(seen.tolist()) == sorted(set(seen.tolist())) and len(seen) == 9
    assert torch.equal(batch_indices(4, 10, 3, seed=5), batch_indices(4, 10, 3, seed=5))
    with pytest.raises(ValueError, match="smaller than one batch"):
        batch_indices(0, 2, 3, seed=0)


def test_training_reduces_loss_and_resume_is_exact(tmp_path):
    data = _Blobs()
    common = dict(steps=8, batch_size=8, lr=3e-3, warmup_steps=2, dead_code_every=2, checkpoint_every=4, seed=1)
    straight = tiny(seed=7)
    x = data.images[:16]
    err0 = F.mse_loss(straight.decode(straight.encode(x)), x).item()
    m1 = train_tokenizer(straight, data, TokenizerTrainConfig(out_dir=str(tmp_path / "a"), **common), progress=False)
    assert m1["steps"] == 8
    assert F.mse_loss(straight.decode(straight.encode(x)), x).item() < err0

    first = tiny(seed=7)  # stops after 5 steps (as if killed just after the step-5 checkpoint) ...
    part = train_tokenizer(
        first, data, TokenizerTrainConfig(out_dir=str(tmp_path / "b"), **common), progress=False, stop_at=5
    )
    assert part["steps"] == 5 and not (tmp_path / "b" / "vq.safetensors").exists()
    resumed = tiny(seed=99)  # ... and a fresh process resumes from the checkpoint: initial weights do not matter
    train_tokenizer(resumed, data, TokenizerTrainConfig(out_dir=str(tmp_path / "b"), **common), progress=False)
    for k, v in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    assert VQTokenizer.from_checkpoint(tmp_path / "b" / "vq.safetensors").config == VQConfig.named("tiny")

    consistent = tiny(seed=7)  # the round-trip term is wired in: same run plus that term ends elsewhere
    cfg = TokenizerTrainConfig(out_dir=str(tmp_path / "c"), consistency_weight=5.0, **common)
    train_tokenizer(consistent, data, cfg, progress=False)
    assert not torch.equal(consistent.decoder.conv_out.weight, straight.decoder.conv_out.weight)


def test_shipped_fmnist_tokenizer_is_small_and_reconstructs():
    from importlib import resources

    weights = resources.files("lpdgen") / "assets" / "vq_fmnist.safetensors"
    assert weights.is_file() and len(weights.read_bytes()) < 3_000_000
    model = VQTokenizer.from_pretrained_fmnist()
    assert model.config == VQConfig.named("fmnist") and model.config.grid == (8, 8)
    if not FMNIST.is_dir():
        pytest.fail("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    x = FashionMNIST(FMNIST, "test").batch(torch.arange(0, 10_000, 25))[0]  # 400 test images, all classes
    codes = model.encode(x)
    recon = model.decode(codes)
    assert psnr(recon, x).mean().item() > 20.0
    again = model.encode(recon.clamp(-1, 1))
    assert (again == codes).float().mean().item() >= 0.95  # encode -> decode -> encode is stable


def test_weights_without_a_config_load_only_as_the_published_vq16(tmp_path):
    from lpdgen.tokenizer import _check_published_vq16

    with torch.device("meta"):  # names and shapes of vq_ds16_c2i.pt, no memory
        published = VQTokenizer(VQConfig()).state_dict()
    _check_published_vq16(published, tmp_path / "vq_ds16_c2i.pt")  # the one config a file may leave unsaid
    with pytest.raises(ValueError, match="not the published VQ-16.*pass config="):
        _check_published_vq16(tiny().state_dict(), tmp_path / "other.pt")
    path = tiny().save(tmp_path / "own")
    (tmp_path / "own.json").unlink()
    save_safetensors(tiny().state_dict(), path)  # weights only: no sidecar, no metadata
    with pytest.raises(ValueError, match="no config saved with these weights"):
        VQTokenizer.from_checkpoint(path)
    (tmp_path / "cfg.json").write_text(json.dumps(VQConfig.named("tiny").to_dict()))  # a bare config file
    assert VQTokenizer.from_checkpoint(path, VQConfig.from_file(tmp_path / "cfg.json")).config == VQConfig.named("tiny")
