"""The embedded models by name: fmnist-64 (8x8 tokens) and fmnist-256 (16x16 tokens, the paper's count),
and the 256-token tokenizer shipped with the second."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpdgen import LPD, VQTokenizer
from lpdgen.data import FashionMNIST
from lpdgen.embedded import DEFAULT_MODEL, EMBEDDED_MODELS, model_folder
from lpdgen.evaluation.classifier import FMNISTClassifier
from lpdgen.pipeline import LPDPipeline
from lpdgen.rng import image_seeds
from lpdgen.tokenizer import load_tokenizer
from lpdgen.training.tokenizer_trainer import psnr


@pytest.fixture(scope="module")
def pipe256() -> LPDPipeline:
    return LPDPipeline.from_pretrained("fmnist-256")


def test_names_load_the_two_models_and_no_name_the_default():
    grids = {name: LPDPipeline.from_pretrained(name).model.cfg for name in EMBEDDED_MODELS}
    assert (grids["fmnist-64"].grid, grids["fmnist-64"].vocab_size) == ((8, 8), 512)
    assert (grids["fmnist-256"].grid, grids["fmnist-256"].vocab_size) == ((16, 16), 1024)
    default = LPDPipeline.from_pretrained()
    assert default.model.cfg == grids[DEFAULT_MODEL]


def test_unknown_embedded_name_lists_the_known_ones():
    with pytest.raises(
        FileNotFoundError, match=r"^pretrained folder not found: fmnist-128 \(embedded models: fmnist-64, fmnist-256\)$"
    ):
        LPDPipeline.from_pretrained("fmnist-128")
    with pytest.raises(ValueError, match="unknown embedded model 'mnist'; choose one of fmnist-64, fmnist-256"):
        model_folder("mnist")


def test_256_token_defaults_are_the_papers_step_count(pipe256):
    s = pipe256.sampling
    assert (s.num_inference_steps, s.order, s.tau, s.rho) == (20, "locality", 1.0, 2.0)
    assert s.guidance_scale > 1.0
    assert pipe256.model.pos_embed.dtype == torch.float32  # stored in fp16, run in fp32


def test_256_token_tokenizer_round_trips_shapes_and_codes():
    tok = load_tokenizer("fmnist-256")
    assert isinstance(tok, VQTokenizer) and tok.config.grid == (16, 16)
    images = FashionMNIST(split="test").batch(torch.arange(64))[0]  # (64, 1, 32, 32) in [-1, 1], padded
    with torch.no_grad():
        codes = tok.encode(images)
        recon = tok.decode(codes)
        again = tok.encode(recon.clamp(-1, 1))
    assert codes.shape == (64, 16, 16) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 1024
    assert recon.shape == images.shape
    assert float(psnr(recon, images).mean()) > 30.0  # the 64-token tokenizer: about 25 dB
    assert float((again == codes).float().mean()) > 0.8  # re-encoding keeps most codes


def _accuracy(pipe: LPDPipeline, per_class: int) -> float:
    labels = [c for c in range(10) for _ in range(per_class)]
    out = pipe(labels, seeds=image_seeds(0, range(len(labels))), output_type="np")
    return FMNISTClassifier.from_checkpoint().accuracy(out.images, np.array(labels))


def test_256_token_model_draws_the_requested_classes(pipe256):
    """The shipped classifier recognises the requested class of most samples; random weights do not."""
    accuracy = _accuracy(pipe256, per_class=3)
    torch.manual_seed(0)
    random = LPDPipeline(LPD(pipe256.model.cfg).eval(), pipe256.tokenizer, sampling=pipe256.sampling)
    random_accuracy = _accuracy(random, per_class=3)
    assert accuracy >= 0.7, accuracy
    assert random_accuracy <= 0.4, random_accuracy


def test_sample_command_takes_an_embedded_name(tmp_path, capsys):
    from PIL import Image

    from lpdgen.cli import main

    out = tmp_path / "bag.png"
    assert (
        main(["sample", "--model", "fmnist-256", "--class", "bag", "--num", "2", "--steps", "4", "--out", str(out)])
        == 0
    )
    assert "4 steps (4 forward passes for 256 tokens)" in capsys.readouterr().out
    assert Image.open(out).size[0] > 64  # a labelled grid of two 32-pixel images
    assert main(["sample", "--model", "fmnist-32", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "pretrained folder not found: fmnist-32 (embedded models: fmnist-64, fmnist-256)" in err
    assert "Traceback" not in err
