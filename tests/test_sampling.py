"""Guidance, filtering and inverse-CDF sampling against straightforward references."""

from __future__ import annotations

import pytest
import torch

from lpdgen.sampling import draw_uniform, filter_logits, guidance_scales, guide, sample_tokens


def test_linear_cfg_schedule_is_one_plus_s_minus_one_times_t_over_n():
    n, s = 256, 4.8
    t = torch.arange(n)
    got = guidance_scales(t, n, s, "linear")
    want = torch.tensor([1 + (s - 1) * ti / n for ti in range(n)], dtype=torch.float32)
    torch.testing.assert_close(got, want)
    assert got[0] == 1.0
    assert torch.all(guidance_scales(t, n, s, "constant") == s)


def test_unknown_cfg_schedule_is_rejected():
    with pytest.raises(ValueError, match="guidance_schedule"):
        guidance_scales(torch.arange(3), 3, 2.0, "cosine")


def test_guidance_with_scale_one_returns_conditional_logits_exactly():
    cond, uncond = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    assert torch.equal(guide(cond, uncond, torch.ones(5)), cond)
    s = torch.linspace(1, 3, 5)
    torch.testing.assert_close(guide(cond, uncond, s), uncond + s[:, None] * (cond - uncond))


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.randn(4, 3, 50)
    out = filter_logits(logits, top_k=7)
    kept = torch.isfinite(out)
    assert torch.all(kept.sum(-1) == 7)
    for row, keep in zip(logits.reshape(-1, 50), kept.reshape(-1, 50)):
        assert set(torch.nonzero(keep).flatten().tolist()) == set(row.topk(7).indices.tolist())


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    logits = torch.randn(64, 30)
    p = 0.7
    out = filter_logits(logits, top_p=p)
    for row, filt in zip(logits, out):
        probs = row.softmax(-1)
        order = probs.argsort(descending=True).tolist()
        keep, mass = [], 0.0
        for i in order:  # naive nucleus: add tokens until the mass reaches p
            keep.append(i)
            mass += probs[i].item()
            if mass >= p:
                break
        assert set(torch.nonzero(torch.isfinite(filt)).flatten().tolist()) == set(keep)


def test_inverse_cdf_sampling_matches_the_distribution():
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([2.0, 0.5, -1.0, 1.0, -3.0])
    draws = 40_000
    u = torch.rand(draws, generator=gen)
    idx = sample_tokens(logits.expand(draws, 5), u)
    freq = torch.bincount(idx, minlength=5).float() / draws
    probs = logits.softmax(-1)
    # 5 standard errors of a binomial proportion
    assert torch.all((freq - probs).abs() <= 5 * (probs * (1 - probs) / draws).sqrt() + 1e-4)


def test_filtered_tokens_are_never_sampled_even_at_the_edges():
    logits = torch.randn(6, 20)
    u = torch.tensor([0.0, 1e-9, 0.5, 0.999999, 0.25, 0.75])
    idx = sample_tokens(logits, u, top_k=3)
    top3 = logits.topk(3).indices
    assert all(i in t for i, t in zip(idx.tolist(), top3.tolist()))


def test_greedy_and_temperature_zero_take_the_argmax():
    logits = torch.randn(3, 4, 9)
    u = torch.rand(3, 4)
    assert torch.equal(sample_tokens(logits, u, top_k=1), logits.argmax(-1))
    assert torch.equal(sample_tokens(logits, u, temperature=0), logits.argmax(-1))


def test_per_sample_generators_make_rows_independent_of_the_batch():
    gens = [torch.Generator().manual_seed(s) for s in (3, 4, 5)]
    batch = draw_uniform((3, 6), gens, torch.device("cpu"))
    alone = draw_uniform((1, 6), [torch.Generator().manual_seed(4)], torch.device("cpu"))
    assert torch.equal(batch[1:2], alone)
    with pytest.raises(ValueError, match="generators"):
        draw_uniform((2, 6), gens, torch.device("cpu"))


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(top_p=0.0), "top_p"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=-1), "top_k"),
        (dict(guidance_scale=float("nan")), "guidance_scale"),
        (dict(guidance_schedule="cosine"), "guidance_schedule"),
    ],
)
def test_bad_sampling_arguments_are_rejected_once_per_call_before_any_step(model, bad, match, monkeypatch):
    """The per-step functions trust their arguments; generate() checks them before the first step."""
    import lpdgen.generation as generation

    monkeypatch.setattr(generation, "run_steps", lambda *a, **k: pytest.fail("a step ran"))
    with pytest.raises(ValueError, match=match):
        generation.generate(model, torch.tensor([0]), [1, 19], torch.arange(20)[None], **bad)
