"""Device checks behind `benchmarks/gpu_check.sh`: reduced precision, FlexAttention training and
compiled (CUDA-graph) decoding against the fp32 eager reference. bf16 runs on every device (CPU in
the default suite); the CUDA-only checks have CPU counterparts in tests/test_model.py (FlexAttention)
and tests/test_engine.py (compiled steps)."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import random_orders, random_schedule

from lpdgen import LPD, LPDConfig
from lpdgen.engine import Engine
from lpdgen.generation import decode_logits, generate

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CFG = dict(width=64, depth=3, heads=4, vocab_size=50, num_classes=6, grid=(4, 6))
N = 24
CONFIDENT = 0.25  # fp32 top-1 minus top-2 logit above which reduced precision must not change the argmax


def model_on(device: str) -> LPD:
    torch.manual_seed(0)
    return LPD(LPDConfig(**CFG)).eval().to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_decoding_keeps_every_confident_greedy_token(device):
    """Teacher-forced cached decoding under bf16 autocast: logits within bf16's relative error, and the
    argmax equal to fp32's wherever fp32's margin is clear (ties may flip; clear choices must not)."""
    model, gen = model_on(device), torch.Generator().manual_seed(0)
    tokens = torch.randint(0, CFG["vocab_size"], (8, N), generator=gen).to(device)
    labels, orders = torch.randint(0, 6, (8,), generator=gen).to(device), random_orders(8, N, gen).to(device)
    sizes = random_schedule(N, gen)
    fp32 = decode_logits(model, tokens, labels, sizes, orders)
    with torch.autocast(device, dtype=torch.bfloat16):
        bf16 = decode_logits(model, tokens, labels, sizes, orders).float()
    assert ((bf16 - fp32).norm() / fp32.norm()).item() < 0.03
    top2 = fp32.topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) > CONFIDENT
    assert clear.float().mean() > 0.3  # the check is not vacuous
    assert torch.equal(bf16.argmax(-1)[clear], fp32.argmax(-1)[clear])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CPU: tests/test_engine.py compiled tests)")
def test_compiled_cuda_graph_decoding_gives_eager_tokens():
    """The step compiled with mode="reduce-overhead" (CUDA graphs over static cache addresses), reused
    across calls and schedules, gives the eager tokens; no fallback to eager happened."""
    device = "cuda"
    model, gen = model_on(device), torch.Generator().manual_seed(1)
    engine = Engine(model, compile=True)
    assert engine.mode == "reduce-overhead"
    labels, orders = torch.tensor([0, 3, 5], device=device), random_orders(3, N, gen).to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would pass vacuously
        for sizes in ([1, 2, 3, 6, 12], random_schedule(N, gen), [1, 2, 3, 6, 12]):
            eager = generate(model, labels, sizes, orders, guidance_scale=3.0, top_k=1)
            assert torch.equal(
                generate(engine.model, labels, sizes, orders, guidance_scale=3.0, top_k=1, engine=engine), eager
            )
    assert engine.compiled


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (compiled FlexAttention)")
@pytest.mark.filterwarnings("ignore:.*flex_attention.*:UserWarning")
def test_flex_attention_training_step_equals_the_dense_mask_step():
    """One forward + backward on CUDA with the compiled FlexAttention block mask: same loss and
    gradients as the dense boolean mask (fp32)."""
    model, gen = model_on("cuda").train(), torch.Generator().manual_seed(2)
    tokens = torch.randint(0, CFG["vocab_size"], (4, N), generator=gen).cuda()
    labels, orders = torch.randint(0, 6, (4,), generator=gen).cuda(), random_orders(4, N, gen).cuda()
    null, sizes = torch.zeros(4, dtype=torch.bool, device="cuda"), random_schedule(N, gen)
    model.cfg.dropout = 0.0
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    grads = []
    for flex in (False, True):
        model.zero_grad()
        model.use_flex_attention = flex
        loss = model(tokens, labels, sizes, orders, null=null)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=0, atol=1e-5)
    for g_flex, g_dense in zip(grads[1][1], grads[0][1]):
        torch.testing.assert_close(g_flex, g_dense, rtol=1e-4, atol=1e-5)
