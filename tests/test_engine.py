"""The inference engine: fixed-shape steps equal the growing-view decoder, the KV cache is reused
safely, compiled steps equal eager ones, and int8 quantization is a clearly-scoped conversion."""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CFG, TINY_N, random_orders, random_schedule

from lpdgen import LPD, LPDConfig
from lpdgen.engine import Engine
from lpdgen.generation import decode_logits, generate
from lpdgen.masks import decode_plan, decode_steps
from lpdgen.quantize import int8_backend, quantize_model
from lpdgen.sampling import guidance_scales, guide

CFG, N = TINY_CFG, TINY_N


@torch.no_grad()
def growing_view_greedy(
    model: LPD, labels: torch.Tensor, sizes: list[int], orders: torch.Tensor, guidance_scale: float
) -> torch.Tensor:
    """The decoder before fixed-shape steps: each step attends over the cache slots [0, slot_end) written
    so far (views that grow every step) under the step's unpadded mask; greedy, linear guidance."""
    b, d, h = labels.shape[0], model.cfg.width, model.cfg.heads
    null = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)])
    pos = model.position_embeddings(torch.cat([orders, orders]))  # (2B, N, D)
    keys = torch.zeros(model.cfg.depth, 2 * b, h, N + 1, d // h)
    values = torch.zeros_like(keys)
    context, out = model.class_tokens(torch.cat([labels, labels]), null), torch.empty(b, N, dtype=torch.long)
    for step in decode_steps(tuple(sizes)):
        g = step.q_end - step.q_start
        x = model.z_proj_ln(torch.cat([context, model.mask_token + pos[:, step.q_start : step.q_end]], 1))
        for i, blk in enumerate(model.blocks):
            q, k, v = blk.attn._qkv(blk.norm1(x))
            keys[i, :, :, step.slot_start : step.slot_end], values[i, :, :, step.slot_start : step.slot_end] = k, v
            mask = step.mask
            if i == model.cfg.depth - 1:
                q, mask, x = q[:, :, -g:], mask[-g:], x[:, -g:]
            att = F.scaled_dot_product_attention(
                q, keys[i, :, :, : step.slot_end], values[i, :, :, : step.slot_end], attn_mask=mask
            )
            x = x + blk.attn._out(att)
            x = x + blk.mlp(blk.norm2(x))
        cond, uncond = model.head(model.norm(x)).chunk(2)
        codes = guide(cond, uncond, guidance_scales(torch.arange(step.q_start, step.q_end), N, guidance_scale)).argmax(
            -1
        )
        out[:, step.q_start : step.q_end] = codes
        context = model.embed_context(torch.cat([codes, codes]), pos[:, step.q_start : step.q_end])
    return torch.empty_like(out).scatter_(1, orders, out)


def test_fixed_shape_steps_give_the_growing_view_decoders_greedy_tokens_on_random_schedules(model):
    gen = torch.Generator().manual_seed(11)
    for sizes in [[1] * N, [N], [1, N - 1]] + [random_schedule(N, gen) for _ in range(10)]:
        labels = torch.randint(0, CFG["num_classes"], (3,), generator=gen)
        orders = random_orders(3, N, gen)
        want = growing_view_greedy(model, labels, sizes, orders, guidance_scale=3.0)
        assert torch.equal(generate(model, labels, sizes, orders, guidance_scale=3.0, top_k=1), want), sizes


@pytest.mark.parametrize("span", [1, 4, 7, 64])
def test_planned_steps_pad_the_step_masks_with_hidden_slots_to_whole_spans(span):
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        sizes = random_schedule(N, gen)
        planned = decode_plan(sizes, N + 4, "cpu", span=span)
        for step, plan in zip(decode_steps(tuple(sizes)), planned, strict=True):
            mask = plan.mask
            assert (plan.q_start, plan.q_end) == (step.q_start, step.q_end)
            assert torch.equal(plan.slots, torch.arange(step.slot_start, step.slot_end))
            width = min(N + 4, span * ((step.slot_end + span - 1) // span))
            assert mask.shape == (step.slot_end - step.slot_start, width)
            assert torch.equal(mask[:, : step.slot_end], step.mask) and not mask[:, step.slot_end :].any()
    with pytest.raises(ValueError, match="slots"):
        decode_plan([1, N - 1], N, "cpu")


def test_every_span_gives_the_same_tokens(model):
    """Hidden slots get weight 0 whatever the span (1: exactly the written slots; 7: several key
    lengths per decode; 1 + N: every slot at every step)."""
    gen = torch.Generator().manual_seed(12)
    labels, orders, sizes = torch.tensor([2, 4]), random_orders(2, N, gen), random_schedule(N, gen)
    want = growing_view_greedy(model, labels, sizes, orders, guidance_scale=3.0)
    for span in (1, 7, N + 1):
        got = generate(model, labels, sizes, orders, guidance_scale=3.0, top_k=1, engine=Engine(model, kv_span=span))
        assert torch.equal(got, want), span


def test_engine_reuses_its_cache_and_stale_slots_never_leak(model):
    """A second call reuses the same buffers (full of the first call's K/V) and still equals a fresh
    decoder; a new batch size gets new buffers."""
    gen = torch.Generator().manual_seed(4)
    engine = Engine(model)
    orders = random_orders(2, N, gen)
    generate(engine.model, torch.tensor([1, 2]), [1, 3, 16], orders, guidance_scale=2.0, top_k=1, engine=engine)
    first = engine._cache
    labels, sizes = torch.tensor([5, 0]), [1, 2, 5, 12]
    got = generate(
        engine.model,
        labels,
        sizes,
        orders,
        guidance_scale=2.0,
        temperature=0.9,
        generator=torch.Generator().manual_seed(1),
        engine=engine,
    )
    assert engine._cache is first
    want = generate(
        model, labels, sizes, orders, guidance_scale=2.0, temperature=0.9, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(got, want)
    generate(engine.model, torch.tensor([1]), sizes, orders[:1], top_k=1, engine=engine)
    assert engine._cache is not first and engine._cache.batch == 1


def test_engine_of_another_model_is_refused(model):
    other = LPD(LPDConfig(**CFG)).eval()
    with pytest.raises(ValueError, match="another model"):
        generate(model, torch.tensor([1]), [1, N - 1], random_orders(1, N, torch.Generator()), engine=Engine(other))


def test_compiled_steps_equal_eager_steps(model):
    """Dynamo tracing, functionalized cache writes and dynamic row counts (aot_eager: fast to compile;
    the inductor run is the slow test below). The compiled steps write the engine's own cache tensors,
    one per layer (no two share storage), with the eager decoder's keys and values."""
    gen = torch.Generator().manual_seed(5)
    engine = Engine(model, compile=True, backend="aot_eager")
    labels, orders = torch.tensor([0, 3, 5]), random_orders(3, N, gen)
    for sizes in ([1, 2, 3, 6, 8], [1, 19], random_schedule(N, gen)):
        eager = generate(model, labels, sizes, orders, guidance_scale=3.0, top_k=1)
        assert torch.equal(
            generate(engine.model, labels, sizes, orders, guidance_scale=3.0, top_k=1, engine=engine), eager
        )
    tokens = torch.randint(0, CFG["vocab_size"], (3, N), generator=gen)
    eager_engine = Engine(model)
    torch.testing.assert_close(
        decode_logits(model, tokens, labels, [1, 4, 15], orders, engine=engine),
        decode_logits(model, tokens, labels, [1, 4, 15], orders, engine=eager_engine),
        rtol=0,
        atol=1e-5,
    )
    assert engine.compiled
    layers = (*engine._cache.k, *engine._cache.v)
    assert len({t.untyped_storage().data_ptr() for t in layers}) == 2 * CFG["depth"]
    for got, want in zip(layers, (*eager_engine._cache.k, *eager_engine._cache.v)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert all(t.abs().sum() > 0 for t in layers)


@pytest.mark.slow
def test_inductor_compiled_steps_give_eager_tokens_in_fp32(model):
    """CPU inductor (minutes on a busy 2-core machine: three compilations of the step)."""
    gen = torch.Generator().manual_seed(6)
    labels, orders = torch.tensor([0, 3, 5]), random_orders(3, N, gen)
    engine = Engine(model, compile=True)
    for sizes in ([1, 2, 3, 6, 8], random_schedule(N, gen)):
        got = generate(model, labels, sizes, orders, guidance_scale=3.0, top_k=1, engine=engine)
        assert torch.equal(got, generate(model, labels, sizes, orders, guidance_scale=3.0, top_k=1))
    assert engine.compiled


def test_a_compile_failure_falls_back_to_eager_with_one_warning(model, monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("backend exploded\nlong traceback")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    engine = Engine(model, compile=True)
    labels, orders = torch.tensor([1, 4]), random_orders(2, N, torch.Generator().manual_seed(7))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = generate(engine.model, labels, [1, 4, 15], orders, guidance_scale=2.0, top_k=1, engine=engine)
        generate(engine.model, labels, [1, 4, 15], orders, guidance_scale=2.0, top_k=1, engine=engine)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "backend exploded" in messages[0] and "long traceback" not in messages[0]
    assert not engine.compiled
    assert torch.equal(got, generate(model, labels, [1, 4, 15], orders, guidance_scale=2.0, top_k=1))


@pytest.mark.parametrize("backend", [None, "fbgemm", "onednn"])
def test_int8_quantizes_every_linear_in_place_and_keeps_greedy_tokens_close(model, backend):
    """Either kernel library (None: the one :func:`int8_backend` picks for this CPU); the weights keep
    the library they were packed for, and the process-wide engine setting is left as it was."""
    gen = torch.Generator().manual_seed(8)
    labels, orders = torch.randint(0, 6, (16,), generator=gen), random_orders(16, N, gen)
    tokens = torch.randint(0, CFG["vocab_size"], (16, N), generator=gen)
    fp32_tokens = generate(model, labels, [1, 4, 15], orders, guidance_scale=2.0, top_k=1)
    fp32_logits = decode_logits(model, tokens, labels, [1, 4, 15], orders)
    engine_before = torch.backends.quantized.engine
    assert quantize_model(model, "int8", backend=backend) is model and model.quantized == "int8"
    assert torch.backends.quantized.engine == engine_before
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())  # dynamic int8 modules replace all
    assert isinstance(model.token_emb, torch.nn.Embedding) and model.token_emb.weight.dtype == torch.float32
    q_logits = decode_logits(model, tokens, labels, [1, 4, 15], orders)
    rel = (q_logits - fp32_logits).norm() / fp32_logits.norm()
    assert 0 < rel < 0.05  # int8 changes the numbers, a little
    agree = (generate(model, labels, [1, 4, 15], orders, guidance_scale=2.0, top_k=1) == fp32_tokens).float().mean()
    assert agree > 0.8


def test_int8_backend_is_an_available_quantized_engine():
    assert int8_backend() in ("onednn", "fbgemm") and int8_backend() in torch.backends.quantized.supported_engines


def test_quantize_rejects_bad_requests(model, tmp_path):
    with pytest.raises(ValueError, match="unknown quantize mode"):
        model.quantize("int3")
    with pytest.raises(ValueError, match="int8 backend 'mkl' is not available"):
        quantize_model(model, "int8", backend="mkl")
    assert not getattr(model, "quantized", None)
    if importlib.util.find_spec("torchao") is None:
        with pytest.raises(ValueError, match="torchao"):
            model.quantize("int4-weight")
    model.quantize("int8")
    with pytest.raises(ValueError, match="already quantized"):
        model.quantize("int8")
    with pytest.raises(ValueError, match="cannot save"):
        model.save(tmp_path / "q")
