"""The embedded Fashion-MNIST model and every way of loading a pipeline: the project's folder format,
published-format checkpoints (tiny random stand-ins in the same formats), and Hugging Face repo ids."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from lpdgen import LPD, LPDConfig, VQConfig, VQTokenizer
from lpdgen.data import FASHION_MNIST_CLASSES
from lpdgen.evaluation.classifier import FMNISTClassifier
from lpdgen.pipeline import LPDPipeline
from lpdgen.rng import image_seeds
from lpdgen.settings import SamplingConfig

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
TINY = LPDConfig(width=32, depth=2, heads=4, vocab_size=24, num_classes=3, grid=(4, 4))


def test_embedded_model_loads_offline_in_eval_mode_with_its_own_defaults(pipe):
    assert not pipe.model.training and not pipe.tokenizer.training
    assert pipe.model.pos_embed.dtype == torch.float32  # stored in fp16, run in fp32
    assert pipe.class_names == FASHION_MNIST_CLASSES
    assert pipe.model.cfg.grid == (8, 8) and pipe.model.cfg.vocab_size == 512
    s = pipe.sampling
    assert 1 <= s.num_inference_steps <= 64 and s.guidance_scale >= 1.0


def _accuracy(pipe: LPDPipeline, per_class: int) -> float:
    labels = [c for c in range(10) for _ in range(per_class)]
    out = pipe(labels, seeds=image_seeds(0, range(len(labels))), output_type="np")
    return FMNISTClassifier.from_checkpoint().accuracy(out.images, np.array(labels))


def test_embedded_model_draws_the_requested_classes(pipe):
    """The shipped classifier recognises the requested class of most samples; the same network with
    random weights does not (so the threshold measures the training, not the classifier)."""
    accuracy = _accuracy(pipe, per_class=5)
    torch.manual_seed(0)
    random = LPDPipeline(LPD(pipe.model.cfg).eval(), pipe.tokenizer, sampling=pipe.sampling)
    random_accuracy = _accuracy(random, per_class=5)
    assert accuracy >= 0.7, accuracy
    assert random_accuracy <= 0.4, random_accuracy


def test_seeds_fix_images_and_batch_size_does_not_change_them(pipe):
    a = pipe(["sneaker", "bag", 0], seeds=[1, 2, 3], output_type="np").images
    again = pipe(["sneaker", "bag", 0], seeds=[1, 2, 3], output_type="np").images
    alone = pipe(["bag"], seeds=[2], output_type="np").images
    other = pipe(["sneaker", "bag", 0], seeds=[4, 5, 6], output_type="np").images
    assert np.array_equal(a, again)
    assert np.array_equal(a[1], alone[0])
    assert all(not np.array_equal(a[i], other[i]) for i in range(3))


def test_class_names_are_labels(pipe):
    by_name = pipe(["Ankle boot", "t-shirt/top"], seeds=[0, 1], output_type="codes")
    by_id = pipe([9, 0], seeds=[0, 1], output_type="codes")
    assert by_name.labels == [9, 0] and torch.equal(by_name.codes, by_id.codes)
    with pytest.raises(ValueError, match="did you mean 'sneaker'"):
        pipe(["sneakr"])
    with pytest.raises(ValueError, match="out of range"):
        pipe([10])


def test_none_means_the_models_defaults_and_arguments_override_them(pipe):
    out = pipe([1], seeds=[0], output_type="codes")
    assert len(out.group_sizes) == pipe.sampling.num_inference_steps
    assert len(pipe([1], num_inference_steps=64, seeds=[0], output_type="codes").group_sizes) == 64
    with pytest.raises(ValueError, match="steps"):
        pipe([1], num_inference_steps=65)
    with pytest.raises(ValueError, match="guidance"):
        pipe([1], guidance_scale=-1.0)


def _tiny_pipeline() -> LPDPipeline:
    torch.manual_seed(0)
    return LPDPipeline(
        LPD(TINY),
        VQTokenizer(VQConfig(**VQ)),
        sampling=SamplingConfig(num_inference_steps=5, guidance_scale=2.0, order="halton"),
        class_names=["cat", "dog", "red panda, lesser panda"],
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_save_pretrained_round_trip(tmp_path, dtype):
    pipe = _tiny_pipeline()
    pipe.save_pretrained(tmp_path / "p", dtype=dtype)
    loaded = LPDPipeline.from_pretrained(tmp_path / "p")
    assert loaded.sampling == pipe.sampling and loaded.class_names == pipe.class_names
    for k, v in pipe.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[k], v.to(dtype).float(), rtol=0, atol=0)
    if dtype == torch.float32:
        a = pipe(["lesser panda", "cat"], seeds=[3, 4], output_type="np").images
        b = loaded(["red panda", 0], seeds=[3, 4], output_type="np").images
        assert np.array_equal(a, b)


def test_published_format_files_load_through_from_pretrained(tmp_path):
    """A published LPD checkpoint is a pickle {"model": state_dict} with no config; LlamaGen's tokenizer
    is a pickle {"model": state_dict}. Tiny random stand-ins in exactly those formats."""
    pipe = _tiny_pipeline()
    torch.save({"model": pipe.model.state_dict()}, tmp_path / "lpd_tiny.pth")
    torch.save({"model": pipe.tokenizer.state_dict()}, tmp_path / "vq_tiny.pt")
    tokenizer = VQTokenizer.from_checkpoint(tmp_path / "vq_tiny.pt", VQConfig(**VQ))
    loaded = LPDPipeline.from_pretrained(checkpoint=tmp_path / "lpd_tiny.pth", config=TINY, tokenizer=tokenizer)
    assert not loaded.model.training
    same = dict(num_inference_steps=4, guidance_scale=2.0, order="locality", seeds=[0, 1], output_type="np")
    a, b = pipe([1, 2], **same).images, loaded([1, 2], **same).images
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="config"):
        LPDPipeline.from_pretrained(checkpoint=tmp_path / "lpd_tiny.pth", tokenizer=tokenizer)


def test_published_imagenet_configs_get_published_settings_and_imagenet_names(tmp_path):
    cfg = LPDConfig(width=32, depth=1, heads=4, vocab_size=24, num_classes=1000, grid=(4, 4))
    torch.save({"model": LPD(cfg).state_dict()}, tmp_path / "m.pth")
    pipe = LPDPipeline.from_pretrained(checkpoint=tmp_path / "m.pth", config=cfg, tokenizer=VQTokenizer(VQConfig(**VQ)))
    assert pipe.class_ids(["golden retriever", "red panda", "tench"]) == [207, 387, 0]
    from lpdgen.settings import PUBLISHED_SAMPLING

    assert PUBLISHED_SAMPLING[("lpd-l", 256)].guidance_scale == 4.8
    assert PUBLISHED_SAMPLING[("lpd-l", 256)].num_inference_steps == 20


def test_hub_repo_ids_download_the_weights_and_the_paper_tokenizer(tmp_path, monkeypatch):
    """With huggingface_hub present, a repo id downloads the one weights file and LlamaGen's tokenizer;
    the config comes from the repo name. The hub is faked here (no network); the call sequence is real."""
    pipe = _tiny_pipeline()
    torch.save({"model": pipe.model.state_dict()}, tmp_path / "w.pth")
    pipe.tokenizer.save(tmp_path / "vq")
    calls = []

    def hf_hub_download(repo, filename):
        calls.append((repo, filename))
        return str(tmp_path / "w.pth") if filename == "lpd_l_256.pth" else str(tmp_path / "vq.safetensors")

    fake = types.SimpleNamespace(
        list_repo_files=lambda repo: ["README.md", "lpd_l_256.pth"], hf_hub_download=hf_hub_download
    )
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    # the named config is far larger than the stand-in: loading must fail on the shapes, after the right downloads
    with pytest.raises(ValueError, match="checkpoint"):
        LPDPipeline.from_pretrained("mit-han-lab/lpd_l_256")
    assert calls == [("mit-han-lab/lpd_l_256", "lpd_l_256.pth"), ("FoundationVision/LlamaGen", "vq_ds16_c2i.pt")]
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(ValueError, match="pip install huggingface_hub"):
        LPDPipeline.from_pretrained("mit-han-lab/lpd_l_256")


def test_bad_pretrained_inputs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        LPDPipeline.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="pipeline.json"):
        LPDPipeline.from_pretrained(tmp_path / "empty")
    _tiny_pipeline().save_pretrained(tmp_path / "p")
    (tmp_path / "p" / "model.safetensors").write_bytes(b"\x00" * 100)  # corrupt weights
    with pytest.raises(ValueError):
        LPDPipeline.from_pretrained(tmp_path / "p")
    other = VQTokenizer(VQConfig(**{**VQ, "codebook_size": 30}))
    other.save(tmp_path / "other")
    torch.save({"model": _tiny_pipeline().model.state_dict()}, tmp_path / "m.pth")
    with pytest.raises(ValueError, match="vocabulary"):
        LPDPipeline.from_pretrained(
            checkpoint=tmp_path / "m.pth", config=TINY, tokenizer=tmp_path / "other.safetensors"
        )
