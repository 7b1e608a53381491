"""The network: sizes, published layout, checkpoints, training forward, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import random_orders, random_schedule

from lpdgen import LPD, LPDConfig
from lpdgen.model import NAMED_CONFIGS, count_parameters, resize_pos_embed

TINY = dict(width=32, depth=2, heads=4, vocab_size=40, num_classes=5, grid=(3, 4))
PUBLISHED_PARAMS = {"lpd-l": 337_157_120, "lpd-xl": 751_947_520, "lpd-xxl": 1_412_184_576}


def tiny(**kw) -> LPD:
    return LPD(LPDConfig(**{**TINY, **kw}))


@pytest.mark.parametrize("name", list(NAMED_CONFIGS))
def test_published_sizes_have_the_published_parameter_counts(name):
    cfg = LPDConfig.named(name, image_size=256)
    with torch.device("meta"):
        model = LPD(cfg)
    built = sum(p.numel() for p in model.parameters())
    assert built == count_parameters(cfg) == PUBLISHED_PARAMS[name]


def test_counting_formula_matches_built_models_of_other_shapes():
    for kw in (TINY, dict(TINY, grid=(5, 2), mlp_ratio=2.0), dict(TINY, depth=3, width=48, heads=6)):
        cfg = LPDConfig(**kw)
        assert count_parameters(cfg) == sum(p.numel() for p in LPD(cfg).parameters())


@pytest.mark.parametrize("name,image_size", [(n, s) for n in NAMED_CONFIGS for s in (256, 512)])
def test_state_dict_layout_equals_the_published_checkpoint(published_data, name, image_size):
    published = json.loads((published_data / "lpd_l_256_state_dict_shapes.json").read_text())["state_dict"]
    cfg = LPDConfig.named(name, image_size=image_size)
    d, depth = cfg.width, cfg.depth
    # The facts file is LPD-L at 256px; XL/XXL differ only in width and depth, 512px only in pos_embed.
    expected = {}
    for key, shape in published.items():
        if key.startswith("blocks."):
            if int(key.split(".")[1]) != 0:
                continue
            for i in range(depth):
                expected[key.replace("blocks.0.", f"blocks.{i}.", 1)] = [
                    s * d // 1024 if s in (1024, 3072, 4096) else s for s in shape
                ]
        else:
            expected[key] = [s * d // 1024 if s in (1024,) else s for s in shape]
    expected["pos_embed"] = [1, cfg.num_tokens + 1, d]
    with torch.device("meta"):
        got = {k: list(v.shape) for k, v in LPD(cfg).state_dict().items()}
    assert got == expected
    if name == "lpd-l" and image_size == 256:
        assert list(got) == list(published)  # same names, shapes and order as the real file


def test_named_config_errors_and_free_form_configs():
    with pytest.raises(ValueError, match="unknown config 'lpd-m'"):
        LPDConfig.named("lpd-m")
    with pytest.raises(ValueError, match="multiple of 16"):
        LPDConfig.named("lpd-l", image_size=250)
    with pytest.raises(ValueError, match="divisible"):
        LPDConfig(width=30, heads=4)
    assert LPDConfig.named("lpd-xl", image_size=512).grid == (32, 32)
    cfg = LPDConfig(**TINY)
    assert cfg.num_tokens == 12 and LPDConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown LPDConfig fields"):
        LPDConfig.from_dict({**cfg.to_dict(), "rope": True})


def test_init_follows_the_published_recipe():
    model = LPD(LPDConfig(width=256, depth=2, heads=4, vocab_size=300, num_classes=200, grid=(8, 8)))
    for p in (model.token_emb.weight, model.class_emb.weight, model.pos_embed):
        assert abs(p.std().item() - 0.02) < 0.002
    w = model.blocks[0].mlp.fc1.weight
    bound = math.sqrt(6 / (w.shape[0] + w.shape[1]))  # xavier-uniform
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert torch.all(model.blocks[0].attn.qkv.bias == 0) and torch.all(model.norm.weight == 1)
    assert model.head.bias is None


# ------------------------------------------------------------------------------------------------
# checkpoints


def test_save_then_load_round_trip_is_exact(tmp_path):
    model = tiny()
    path = model.save(tmp_path / "m")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    loaded = LPD.from_checkpoint(path)
    assert loaded.cfg == model.cfg
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    path.with_suffix(".json").unlink()  # the config is also in the safetensors metadata
    assert LPD.from_checkpoint(path).cfg == model.cfg


def test_published_pickle_and_bare_state_dict_load_unchanged(tmp_path):
    model = tiny()
    torch.save({"model": model.state_dict()}, tmp_path / "pub.pth")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    for name in ("pub.pth", "bare.pt"):
        loaded = LPD.from_checkpoint(tmp_path / name, config=LPDConfig(**TINY))
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(ValueError, match="pass config"):
        LPD.from_checkpoint(tmp_path / "pub.pth")


def test_256px_checkpoint_loads_into_512px_model_with_bicubic_pos_embed(tmp_path):
    small = tiny(grid=(4, 4))
    with torch.no_grad():
        small.pos_embed[0, 1:] = 0.5  # a constant field stays constant under bicubic resizing
    torch.save({"model": small.state_dict()}, tmp_path / "256.pth")
    big = LPD.from_checkpoint(tmp_path / "256.pth", config=LPDConfig(**{**TINY, "grid": (8, 8)}))
    assert big.pos_embed.shape == (1, 65, TINY["width"])
    assert torch.equal(big.pos_embed[0, 0], small.pos_embed[0, 0])  # class slot kept
    torch.testing.assert_close(big.pos_embed[0, 1:], torch.full((64, TINY["width"]), 0.5))
    # and a real field matches torch's bicubic interpolation of the (h, w) grid
    field = torch.randn(1, 17, 3)
    want = F.interpolate(
        field[:, 1:].reshape(1, 4, 4, 3).permute(0, 3, 1, 2), size=(8, 8), mode="bicubic", align_corners=False
    )
    torch.testing.assert_close(resize_pos_embed(field, (8, 8))[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 64, 3))


def test_mismatched_checkpoint_lists_missing_unexpected_and_wrong_keys(tmp_path):
    state = tiny().state_dict()
    state.pop("norm.weight")
    state["extra.weight"] = torch.zeros(1)
    state["head.weight"] = torch.zeros(7, 7)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        LPD.from_checkpoint(tmp_path / "bad.pth", config=LPDConfig(**TINY))
    msg = str(err.value)
    assert (
        "missing keys: norm.weight" in msg
        and "unexpected keys: extra.weight" in msg
        and "head.weight: checkpoint (7, 7)" in msg
    )


def test_corrupt_and_missing_checkpoints_fail_clearly(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        LPD.from_checkpoint(tmp_path / "junk.pth", config=LPDConfig(**TINY))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="safetensors"):
        LPD.from_checkpoint(tmp_path / "junk.safetensors", config=LPDConfig(**TINY))
    with pytest.raises(FileNotFoundError):
        LPD.from_checkpoint(tmp_path / "nope.pth", config=LPDConfig(**TINY))


# ------------------------------------------------------------------------------------------------
# training forward


def test_loss_is_cross_entropy_of_query_logits_against_tokens_in_order():
    model = tiny().eval()
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 40, (3, 12), generator=gen)
    labels = torch.tensor([0, 4, 2])
    orders = random_orders(3, 12, gen)
    sizes = [1, 3, 8]
    logits = model.forward_logits(tokens, labels, sizes, orders)
    assert logits.shape == (3, 12, 40)
    want = F.cross_entropy(logits.reshape(-1, 40), torch.gather(tokens, 1, orders).reshape(-1))
    torch.testing.assert_close(model(tokens, labels, sizes, orders), want)


def test_query_logits_do_not_depend_on_tokens_of_their_own_or_later_steps():
    model = tiny().eval()
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 40, (2, 12), generator=gen)
    orders = random_orders(2, 12, gen)
    sizes = [1, 2, 4, 5]
    base = model.forward_logits(tokens, torch.tensor([1, 2]), sizes, orders)
    changed = tokens.clone()
    later = orders[:, 3:]  # positions generated at steps 3 and 4
    changed.scatter_(1, later, (torch.gather(tokens, 1, later) + 1) % 40)
    again = model.forward_logits(changed, torch.tensor([1, 2]), sizes, orders)
    torch.testing.assert_close(again[:, :3], base[:, :3], rtol=0, atol=1e-6)  # steps 1-2 unaffected
    assert (again[:, 7:] - base[:, 7:]).abs().max() > 1e-4  # step 4 saw step 3's changed tokens


def test_label_drop_uses_the_null_class_and_is_seeded():
    model = tiny(label_drop=1.0, dropout=0.0).train()
    tokens = torch.randint(0, 40, (2, 12))
    orders = random_orders(2, 12, torch.Generator().manual_seed(0))
    a = model.forward_logits(tokens, torch.tensor([0, 1]), [1, 11], orders)
    b = model.forward_logits(tokens, torch.tensor([3, 4]), [1, 11], orders)
    torch.testing.assert_close(a, b)  # every label dropped: labels do not matter
    model.cfg.label_drop = 0.5
    draws = [
        model(tokens, torch.tensor([0, 1]), [1, 11], orders, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    torch.testing.assert_close(draws[0], draws[1])


def test_default_orders_are_fresh_seeded_permutations_and_gradients_flow():
    model = tiny(dropout=0.0)  # dropout draws from torch's global stream, like any nn.Dropout
    tokens = torch.randint(0, 40, (4, 12))
    loss1 = model(tokens, torch.zeros(4, dtype=torch.long), [1, 5, 6], generator=torch.Generator().manual_seed(1))
    loss2 = model(tokens, torch.zeros(4, dtype=torch.long), [1, 5, 6], generator=torch.Generator().manual_seed(1))
    assert torch.equal(loss1, loss2)
    loss1.backward()
    grads = {k: p.grad for k, p in model.named_parameters() if k != "fake_latent"}  # used only when a label drops
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["mask_token"].abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients():
    gen = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 40, (2, 12), generator=gen)
    orders = random_orders(2, 12, gen)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = tiny(dropout=0.0, label_drop=0.0).train()
        model.gradient_checkpointing = ckpt
        model(tokens, torch.tensor([1, 2]), [1, 4, 7], orders).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])


def test_bad_training_input_raises_value_errors():
    model = tiny()
    tokens = torch.randint(0, 40, (2, 12))
    labels = torch.tensor([0, 1])
    orders = random_orders(2, 12, torch.Generator().manual_seed(0))
    cases = [
        (dict(group_sizes=[1, 5, 5]), "sum"),
        (dict(group_sizes=[1, 0, 11]), ">= 1"),
        (dict(orders=orders[:, :11]), "shape"),
        (dict(orders=torch.zeros(2, 12, dtype=torch.long)), "permutation"),
        (dict(orders=orders[:1]), "rows"),
        (dict(labels=torch.tensor([0, 5])), r"\[0, 5\)"),
        (dict(labels=torch.tensor([[0, 1]])), "1-D"),
        (dict(labels=torch.tensor([0, 1, 2])), "entries"),
        (dict(tokens=tokens[:, :10]), "raster-order"),
        (dict(tokens=tokens.float()), "integer"),
        (dict(tokens=tokens + 40), "codes must lie"),
    ]
    for change, pattern in cases:
        kw = dict(tokens=tokens, labels=labels, group_sizes=[1, 11], orders=orders) | change
        with pytest.raises(ValueError, match=pattern):
            model(**kw)


def test_random_schedules_give_finite_losses():
    model = tiny()
    gen = torch.Generator().manual_seed(9)
    for _ in range(10):
        sizes = random_schedule(12, gen)
        loss = model(torch.randint(0, 40, (2, 12), generator=gen), torch.tensor([3, 4]), sizes, generator=gen)
        assert torch.isfinite(loss) and 2.0 < loss.item() < 8.0


@pytest.mark.filterwarnings("ignore:.*flex_attention.*:UserWarning")
def test_flex_attention_path_equals_the_dense_mask_path():
    """The CUDA training path (FlexAttention BlockMask) computes the same logits; here it runs
    FlexAttention's eager reference on the CPU (forward only: FlexAttention has no CPU backward)."""
    gen = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, 40, (2, 12), generator=gen)
    orders = random_orders(2, 12, gen)
    model = tiny().eval()
    with torch.no_grad():
        for sizes in ([1, 2, 4, 5], [1] * 12, [1, 11], random_schedule(12, gen)):
            dense = model.forward_logits(tokens, torch.tensor([1, 2]), sizes, orders)
            model.use_flex_attention = True
            flex = model.forward_logits(tokens, torch.tensor([1, 2]), sizes, orders)
            model.use_flex_attention = False
            torch.testing.assert_close(flex, dense, rtol=0, atol=1e-5)
