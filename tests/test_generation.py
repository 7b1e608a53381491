"""Cached parallel decoding equals the training forward, and sampling behaves as specified."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CFG, TINY_N, random_orders, random_schedule

from lpdgen import LPD
from lpdgen.engine import Engine
from lpdgen.generation import _generate, decode_logits, generate
from lpdgen.sampling import draw_uniform, guidance_scales, guide, sample_tokens

CFG, N = TINY_CFG, TINY_N


def test_teacher_forced_decoding_equals_training_forward_on_random_schedules(model):
    gen = torch.Generator().manual_seed(0)
    schedules = [[1] * N, [N], [1, N - 1], [1, 2, 3, 4, 10]] + [random_schedule(N, gen) for _ in range(12)]
    for sizes in schedules:
        tokens = torch.randint(0, CFG["vocab_size"], (3, N), generator=gen)
        labels = torch.randint(0, CFG["num_classes"], (3,), generator=gen)
        orders = random_orders(3, N, gen)
        train = model.forward_logits(tokens, labels, sizes, orders)
        cached = decode_logits(model, tokens, labels, sizes, orders)
        assert (train - cached).abs().max() <= 1e-4, sizes


def naive_forward(model: LPD, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The blocks written out with explicit softmax attention (independent of SDPA and the model's code)."""
    h, d = model.cfg.heads, model.cfg.width
    for blk in model.blocks:
        y = F.layer_norm(x, (d,), blk.norm1.weight, blk.norm1.bias, 1e-6)
        q, k, v = (y @ blk.attn.qkv.weight.T + blk.attn.qkv.bias).split(d, dim=-1)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], h, d // h).transpose(1, 2)  # noqa: E731
        scores = split(q) @ split(k).transpose(-1, -2) / (d // h) ** 0.5
        att = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ split(v)
        x = x + att.transpose(1, 2).reshape(x.shape) @ blk.attn.proj.weight.T + blk.attn.proj.bias
        y = F.layer_norm(x, (d,), blk.norm2.weight, blk.norm2.bias, 1e-6)
        hid = (
            0.5
            * (y @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias)
            * (1 + torch.erf((y @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias) / 2**0.5))
        )
        x = x + hid @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias
    x = F.layer_norm(x, (d,), model.norm.weight, model.norm.bias, 1e-6)
    return x @ model.head.weight.T


def test_one_token_steps_in_raster_order_are_an_ordinary_causal_model(model):
    """With g = 1 everywhere and raster order, the logit for position j is a causal transformer's
    output on [class, x_0 .. x_{j-1}, query_j]: check every j against a naive causal forward."""
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, CFG["vocab_size"], (2, N), generator=gen)
    labels = torch.tensor([2, 5])
    raster = torch.arange(N).expand(2, N)
    cached = decode_logits(model, tokens, labels, [1] * N, raster)
    train = model.forward_logits(tokens, labels, [1] * N, raster)
    with torch.no_grad():
        pos = model.pos_embed[0]
        cls = model.class_emb(labels) + pos[0]
        for j in range(N):
            seq = [
                cls[:, None],
                model.token_emb(tokens[:, :j]) + pos[1 : 1 + j],
                (model.mask_token[0] + pos[1 + j])[None].expand(2, 1, -1),
            ]
            x = F.layer_norm(torch.cat(seq, 1), (CFG["width"],), model.z_proj_ln.weight, model.z_proj_ln.bias, 1e-6)
            causal = torch.ones(j + 2, j + 2, dtype=torch.bool).tril()
            want = naive_forward(model, x, causal)[:, -1]
            assert (cached[:, j] - want).abs().max() <= 1e-4
            assert (train[:, j] - want).abs().max() <= 1e-4


def reference_generate(model, labels, sizes, orders, cfg, schedule, temperature, top_k, top_p, generator):
    """Straightforward generation through the training forward: at step k, run the full teacher-forcing
    forward on the tokens chosen so far (later tokens cannot influence step k), guide, sample."""
    b = labels.shape[0]
    tokens = torch.zeros(b, N, dtype=torch.long)
    start = 0
    for g in sizes:
        pos = orders[:, start : start + g]
        c = model.forward_logits(tokens, labels, sizes, orders, null=torch.zeros(b, dtype=torch.bool))[
            :, start : start + g
        ]
        if cfg != 1.0:
            u = model.forward_logits(tokens, labels, sizes, orders, null=torch.ones(b, dtype=torch.bool))[
                :, start : start + g
            ]
            c = guide(c, u, guidance_scales(torch.arange(start, start + g), N, cfg, schedule))
        codes = sample_tokens(c, draw_uniform((b, g), generator, torch.device("cpu")), temperature, top_k, top_p)
        tokens.scatter_(1, pos, codes)
        start += g
    return tokens


@pytest.mark.parametrize(
    "cfg,schedule,temperature,top_k,top_p",
    [
        (1.0, "linear", 1.0, 1, 1.0),
        (4.0, "linear", 1.0, 1, 1.0),
        (2.5, "constant", 1.0, 0, 1.0),
        (3.0, "linear", 0.8, 10, 0.9),
    ],
)
def test_generate_equals_a_straightforward_reference_loop(model, cfg, schedule, temperature, top_k, top_p):
    gen = torch.Generator().manual_seed(4)
    labels = torch.tensor([0, 3, 5])
    orders = random_orders(3, N, gen)
    sizes = [1, 2, 3, 6, 8]
    with torch.no_grad():
        want = reference_generate(
            model, labels, sizes, orders, cfg, schedule, temperature, top_k, top_p, torch.Generator().manual_seed(9)
        )
    got = generate(
        model,
        labels,
        sizes,
        orders,
        guidance_scale=cfg,
        guidance_schedule=schedule,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=torch.Generator().manual_seed(9),
    )
    assert got.dtype == torch.long and got.shape == (3, N)
    assert torch.equal(got, want)


def test_cfg_one_through_the_doubled_batch_equals_no_guidance(model):
    labels, orders = torch.tensor([1, 4]), random_orders(2, N, torch.Generator().manual_seed(2))
    kw = dict(guidance_scale=1.0, guidance_schedule="linear", temperature=1.0, top_k=0, top_p=1.0)
    guided = _generate(
        model,
        labels,
        [1, 3, 16],
        orders,
        guided=True,
        generator=torch.Generator().manual_seed(3),
        engine=Engine(model),
        **kw,
    )
    plain = _generate(
        model,
        labels,
        [1, 3, 16],
        orders,
        guided=False,
        generator=torch.Generator().manual_seed(3),
        engine=Engine(model),
        **kw,
    )
    assert torch.equal(guided, plain)


def test_greedy_is_deterministic_and_independent_of_batch_size(model):
    gen = torch.Generator().manual_seed(5)
    labels = torch.tensor([0, 1, 2, 3])
    orders = random_orders(4, N, gen)
    sizes = [1, 2, 4, 6, 7]
    batch = generate(model, labels, sizes, orders, guidance_scale=3.0, top_k=1)
    assert torch.equal(batch, generate(model, labels, sizes, orders, guidance_scale=3.0, top_k=1))
    for i in range(4):
        assert torch.equal(
            generate(model, labels[i : i + 1], sizes, orders[i : i + 1], guidance_scale=3.0, top_k=1), batch[i : i + 1]
        )


def test_per_sample_generators_make_samples_independent_of_the_batch(model):
    orders = random_orders(3, N, torch.Generator().manual_seed(6))
    labels = torch.tensor([5, 0, 2])
    gens = [torch.Generator().manual_seed(100 + i) for i in range(3)]
    batch = generate(model, labels, [1, 4, 15], orders, guidance_scale=2.0, generator=gens)
    alone = generate(
        model, labels[1:2], [1, 4, 15], orders[1:2], guidance_scale=2.0, generator=[torch.Generator().manual_seed(101)]
    )
    assert torch.equal(batch[1:2], alone)


def test_output_is_in_raster_order(model):
    """Scatter back to raster: generating with order pi must put the step-j token at raster pi(j)."""
    orders = random_orders(2, N, torch.Generator().manual_seed(7))
    labels = torch.tensor([1, 2])
    codes = generate(model, labels, [1, 19], orders, top_k=1)
    logits = model.forward_logits(codes, labels, [1, 19], orders)
    assert torch.equal(torch.gather(codes, 1, orders), logits.argmax(-1))


def test_bf16_weights_and_autocast_generate_valid_codes(model):
    orders = random_orders(2, N, torch.Generator().manual_seed(8))
    labels = torch.tensor([1, 2])
    fp32 = generate(model, labels, [1, 4, 15], orders, guidance_scale=2.0, top_k=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = generate(model, labels, [1, 4, 15], orders, guidance_scale=2.0, top_k=1)
    bf16 = LPD(model.cfg).eval()
    bf16.load_state_dict(model.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    cast = generate(bf16, labels, [1, 4, 15], orders, guidance_scale=2.0, top_k=1)
    for out in (auto, cast):
        assert out.shape == (2, N) and out.min() >= 0 and out.max() < CFG["vocab_size"]
        assert (out == fp32).float().mean() > 0.5  # low precision changes few argmaxes of a random model


def test_generation_leaves_the_model_unchanged(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    orders = random_orders(1, N, torch.Generator().manual_seed(0))
    want = generate(model, torch.tensor([1]), [1, 19], orders, guidance_scale=3.0, top_k=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
    model.train()  # a training preview: decoding runs without dropout and hands back a training model
    assert torch.equal(generate(model, torch.tensor([1]), [1, 19], orders, guidance_scale=3.0, top_k=1), want)
    assert model.training


def test_bad_generation_input_raises_value_errors(model):
    orders = random_orders(2, N, torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="sum"):
        generate(model, labels, [1, 2], orders)
    with pytest.raises(ValueError, match="permutation"):
        generate(model, labels, [1, 19], torch.zeros(2, N, dtype=torch.long))
    with pytest.raises(ValueError, match="rows"):
        generate(model, labels, [1, 19], orders[:1])
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        generate(model, torch.tensor([0, 6]), [1, 19], orders)
    with pytest.raises(ValueError, match="guidance_schedule"):
        generate(model, labels, [1, 19], orders, guidance_scale=2.0, guidance_schedule="cosine")
