"""The pipeline glues schedule, orders, decoding and the tokenizer; seeds make images batch-independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpdgen import LPD, LPDConfig, VQConfig, VQTokenizer
from lpdgen.orders import group_sizes, locality_aware
from lpdgen.pipeline import LPDPipeline

VQ = dict(
    image_channels=1,
    base_channels=32,
    channel_mult=(1, 2),
    num_res_blocks=1,
    z_channels=16,
    codebook_size=24,
    codebook_dim=4,
    norm_groups=8,
    image_size=16,
)


@pytest.fixture
def pipe() -> LPDPipeline:
    torch.manual_seed(0)
    model = LPD(LPDConfig(width=32, depth=2, heads=4, vocab_size=24, num_classes=10, grid=(8, 8)))
    return LPDPipeline(model, VQTokenizer(VQConfig(**VQ)))


def test_seeded_images_do_not_depend_on_the_batch(pipe):
    batch = pipe([3, 7, 1], num_inference_steps=8, guidance_scale=2.0, seeds=[10, 11, 12], output_type="codes")
    alone = pipe([7], num_inference_steps=8, guidance_scale=2.0, seeds=[11], output_type="codes")
    assert torch.equal(batch.codes[1], alone.codes[0]) and torch.equal(batch.orders[1], alone.orders[0])
    # the order of a seeded image is the locality-aware order of that seed
    want = locality_aware((8, 8), group_sizes(64, 8), batch=1, seed=torch.Generator().manual_seed(11))
    assert torch.equal(alone.orders, want)


def test_output_types_and_shapes(pipe):
    out = pipe([0, 1], num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (2, 16, 16, 1) and out.images.dtype == np.uint8
    assert out.codes.shape == (2, 8, 8) and out.group_sizes == group_sizes(64, 4)
    pt = pipe([0, 1], num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert torch.equal(pt.codes, out.codes)  # same generator seed, same images
    assert pt.images.shape == (2, 1, 16, 16) and pt.images.min() >= -1 and pt.images.max() <= 1
    torch.testing.assert_close(pt.images, pipe.tokenizer.decode(pt.codes).clamp(-1, 1))
    pil = pipe([4], num_inference_steps=4, seeds=[0], output_type="pil")
    assert pil.images[0].size == (16, 16) and pil.images[0].mode == "L"


def test_tau_and_rho_are_call_settings_like_the_others(pipe):
    """Per-call thresholds reach the order; the model's defaults stay as they were."""
    sizes = group_sizes(64, 8)
    out = pipe([5], num_inference_steps=8, tau=0.0, rho=0.0, seeds=[3], output_type="codes")
    want = locality_aware((8, 8), sizes, batch=1, seed=torch.Generator().manual_seed(3), tau=0.0, rho=0.0)
    published = locality_aware((8, 8), sizes, batch=1, seed=torch.Generator().manual_seed(3))
    assert torch.equal(out.orders, want) and not torch.equal(want, published)
    assert (pipe.sampling.tau, pipe.sampling.rho) != (0.0, 0.0)
    s = pipe.settings(guidance_scale=2.5, rho=None)
    assert s.guidance_scale == 2.5 and s.rho == pipe.sampling.rho
    with pytest.raises(TypeError, match="cfg"):
        pipe.settings(cfg=2.0)


@pytest.mark.parametrize("kind", ["raster", "random", "halton"])
def test_other_orders_are_accepted(pipe, kind):
    out = pipe([2], num_inference_steps=64, order=kind, seeds=[1], output_type="codes")
    assert sorted(out.orders[0].tolist()) == list(range(64))


def test_bad_pipeline_arguments(pipe):
    with pytest.raises(ValueError, match="output_type"):
        pipe([0], output_type="jpeg")
    with pytest.raises(ValueError, match="order"):
        pipe([0], order="spiral")
    with pytest.raises(ValueError, match="seed"):
        pipe([0, 1], seeds=[1])
    with pytest.raises(ValueError, match="class id 10 is out of range"):
        pipe([10], num_inference_steps=4, output_type="codes")
    with pytest.raises(ValueError, match="steps"):
        pipe([0], num_inference_steps=65, output_type="codes")
    with pytest.raises(ValueError, match="tokenizer"):
        LPDPipeline(pipe.model)([0])
