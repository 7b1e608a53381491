"""`lpdgen info` and `lpdgen sample` end to end on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lpdgen import LPD, LPDConfig, VQConfig, VQTokenizer
from lpdgen.cli import main
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


def test_info_lists_the_published_sizes_with_their_parameter_counts(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for count in ("337,157,120", "751,947,520", "1,412,184,576"):
        assert count in out
    # the embedded models (all of lpdgen.embedded's), with their sizes as the files hold them
    from lpdgen.embedded import EMBEDDED_MODELS
    from lpdgen.pipeline import LPDPipeline

    assert list(EMBEDDED_MODELS) == ["fmnist-64", "fmnist-256"]
    for name, grid in (("fmnist-64", "8x8"), ("fmnist-256", "16x16")):
        pipe = LPDPipeline.from_pretrained(name)
        assert f"{sum(p.numel() for p in pipe.model.parameters()):,}" in out
        assert f"{sum(v.numel() for v in pipe.tokenizer.state_dict().values()):,}" in out
        assert f"{name}: LPD, 32x32 Fashion-MNIST, {grid} tokens, 10 classes" in out and f"--model {name} (" in out
    from lpdgen.embedded import DEFAULT_MODEL

    assert f"--model {DEFAULT_MODEL} (the default;" in out and out.count("(the default;") == 1
    assert "--tokenizer fmnist\n" in out and "--tokenizer fmnist-256\n" in out
    assert "--classifier fmnist" in out and "test accuracy 90.5%" in out


@pytest.fixture
def tiny_files(tmp_path):
    model = LPD(LPDConfig(width=32, depth=2, heads=4, vocab_size=24, num_classes=3, grid=(8, 8)))
    tok = VQTokenizer(VQConfig(**VQ))
    return model.save(tmp_path / "lpd"), tok.save(tmp_path / "vq"), tmp_path


def test_sample_writes_a_grid_and_one_file_per_image(tiny_files):
    lpd, vq, tmp = tiny_files
    args = [
        "sample",
        "--checkpoint",
        str(lpd),
        "--tokenizer",
        str(vq),
        "--steps",
        "6",
        "--cfg",
        "2.0",
        "--num",
        "2",
        "--batch-size",
        "4",
        "--out",
        str(tmp / "grid.png"),
        "--out-dir",
        str(tmp / "imgs"),
    ]
    assert main(args) == 0
    files = sorted((tmp / "imgs").glob("*.png"))
    assert len(files) == 6 and files[0].name == "000000_class0.png"
    grid = np.asarray(Image.open(tmp / "grid.png"))
    assert grid.shape[0] > 3 * 16 * 2  # 3 labelled rows of 2 images, shown at twice their size, and a title
    # image i depends on (seed, i) only: a rerun with another batch size gives the same pixels
    assert main([*args[:-4], "--batch-size", "5", "--out", "", "--out-dir", str(tmp / "again")]) == 0
    for a, b in zip(files, sorted((tmp / "again").glob("*.png"))):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_sample_counts_in_words(tiny_files, capsys):
    lpd, vq, tmp = tiny_files
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(lpd),
                "--tokenizer",
                str(vq),
                "--steps",
                "1",
                "--class",
                "0",
                "--num",
                "1",
                "--out",
                "",
                "--out-dir",
                str(tmp / "one"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("1 image in ") and "1 step (1 forward pass for 64 tokens)" in out, out
    assert "wrote 1 image to" in out and "images" not in out, out


def test_sample_rejects_a_tokenizer_with_another_vocabulary(tiny_files, tmp_path, capsys):
    lpd, _, _ = tiny_files
    other = VQTokenizer(VQConfig(**{**VQ, "codebook_size": 30})).save(tmp_path / "other")
    assert main(["sample", "--checkpoint", str(lpd), "--tokenizer", str(other), "--out", str(tmp_path / "x.png")]) == 2
    assert "codebook has 30 entries but the model's vocabulary is 24" in capsys.readouterr().err


def test_sample_reports_a_missing_checkpoint(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "none.safetensors"), "--tokenizer", "fmnist"]) == 2
    assert "not found" in capsys.readouterr().err


def test_sample_with_no_model_arguments_uses_the_embedded_model(tmp_path, capsys):
    """The main job on a fresh machine: a labelled grid, one row per class, and the decoding GIF."""
    out, gif = tmp_path / "samples.png", tmp_path / "decode.gif"
    assert main(["sample", "--num", "3", "--out", str(out), "--gif", str(gif)]) == 0
    printed = capsys.readouterr().out
    assert "ms per image" in printed and "steps" in printed
    grid = np.asarray(Image.open(out).convert("L")).astype(float)
    assert grid.shape[0] >= 10 * 64 and grid.shape[1] >= 3 * 64  # 10 rows x 3 images of 32 px shown at 64 px
    assert grid.std() > 20  # not blank
    h = grid.shape[0] // 10
    rows = [grid[r * h : (r + 1) * h] for r in range(10)]
    assert all(np.abs(rows[i] - rows[i + 1]).mean() > 5 for i in range(9))  # rows (classes) differ
    frames = Image.open(gif)
    from lpdgen.pipeline import LPDPipeline

    assert frames.n_frames == LPDPipeline.from_pretrained().sampling.num_inference_steps
    assert (
        main(
            [
                "sample",
                "--class",
                "sneaker",
                "bag",
                "--num",
                "1",
                "--steps",
                "64",
                "--order",
                "raster",
                "--out",
                str(tmp_path / "two.jpg"),
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "two.jpg").format == "JPEG"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--class", "sneakr"], "did you mean 'sneaker'"),
        (["--class", "boot"], "did you mean 'ankle boot'"),
        (["--class", "10"], "out of range"),
        (["--steps", "257"], "256 tokens"),  # the default model
        (["--model", "fmnist-64", "--steps", "65"], "64 tokens"),
        (
            ["--steps", "auto", "--order", "raster"],
            "--steps auto picks its cells with the locality-aware rule; --order",
        ),
        (["--steps", "8", "--entropy-bound", "5"], "--entropy-bound applies to --steps auto only, got 8 steps"),
        (["--cfg", "-1"], "--guidance-scale must be a finite number >= 0"),
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--model", "/nonexistent/folder"], "not found"),
        (["--config", "lpd-l"], "go with --checkpoint"),
    ],
)
def test_sample_bad_input_is_one_clear_line(argv, message, tmp_path, capsys):
    assert main(["sample", *argv, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(
    "damage, message",
    [
        ("flip", "the weights are damaged (their sha256 differs from the one saved with them)"),
        ("nan", "hold 1 NaN or infinite values"),
        ("random", "the file is damaged or not a PyTorch file"),
    ],
)
def test_damaged_weights_are_one_line_and_no_images(tiny_files, capsys, damage, message):
    """Weights that load but are wrong would decode into plausible garbage (identical images, exit 0):
    a flipped byte in the tensor data, a NaN weight, random bytes named .pth."""
    import torch

    lpd, vq, tmp = tiny_files
    if damage == "flip":
        data = bytearray(lpd.read_bytes())
        data[-1] ^= 0x40  # a byte of the last tensor's data: the file still parses
        lpd.write_bytes(bytes(data))
    elif damage == "nan":
        model = LPD.from_checkpoint(lpd)
        with torch.no_grad():
            model.head.weight[0, 0] = float("nan")
        model.save(lpd)
    else:
        lpd = tmp / "random.pth"
        lpd.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    extra = ["--config", "lpd-l"] if damage == "random" else []
    out = tmp / "x.png"
    assert main(["sample", "--checkpoint", str(lpd), *extra, "--tokenizer", str(vq), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("lpdgen sample: error: ") and message in err, err
    assert len(err) < 300 and not out.exists()


def test_model_flag_errors_speak_of_flags_not_python(tiny_files, capsys):
    weights, _, folder = tiny_files
    bare = folder / "bare.pth"  # a state dict with no config: --model cannot know the architecture
    torch.save(LPD(LPDConfig(width=32, depth=1, heads=2, vocab_size=24, num_classes=3, grid=(8, 8))).state_dict(), bare)
    (folder / "empty").mkdir()
    no_tokenizer = "no tokenizer was recorded with these weights and no shipped one fits (24 codes on a 8x8 grid)"
    for model, message in (
        (
            bare,
            "is a file with no model config saved with it; give a model folder or a training run, or pass weights with --checkpoint",
        ),
        (weights, f"{no_tokenizer}; pass --checkpoint {weights} --tokenizer FILE"),
        (folder, f"--model {folder}: {no_tokenizer}"),  # lpd.safetensors in it: a training run's final weights
        (
            folder / "empty",
            "not a model folder (no pipeline.json; scripts/export_pretrained.py writes one) nor a training run",
        ),
    ):
        assert main(["sample", "--model", str(model), "--out", str(folder / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
        assert not any(api in err for api in ("save_pretrained", "checkpoint=", "LPDPipeline")), err


SAMPLING_COMMANDS = [
    ["sample"],
    ["edit", "inpaint", "--image", "x.png", "--box", "0", "0", "8", "8", "--class", "0", "--out", "y.png"],
    ["eval", "sample", "--checkpoint", "m.safetensors", "--out", "x.npz"],
    ["eval", "cfg-search", "--checkpoint", "m.safetensors", "--scales", "1", "--out-dir", "d", "--ref", "fmnist"],
]


@pytest.mark.parametrize("argv", SAMPLING_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_sampling_command_takes_every_setting_from_the_model_unless_told(argv):
    """No sampling flag given: each of the nine settings is the model's own (the published ones of a
    published model), in every command that samples; a flag changes its setting and nothing else."""
    from lpdgen.cli import build_parser
    from lpdgen.commands.common import resolve_settings
    from lpdgen.settings import FIELDS, SamplingConfig

    pipe = LPDPipeline(
        LPD(LPDConfig(width=32, depth=1, heads=2, vocab_size=16, num_classes=3, grid=(4, 4))),
        sampling=SamplingConfig(
            num_inference_steps=5,
            guidance_scale=2.5,
            guidance_schedule="constant",
            order="halton",
            temperature=0.8,
            top_k=3,
            top_p=0.9,
            tau=0.5,
            rho=2.0,
        ),
    )
    parser = build_parser()
    assert resolve_settings(pipe, parser.parse_args(argv)) == pipe.sampling
    told = resolve_settings(pipe, parser.parse_args([*argv, "--steps", "7", "--cfg", "1.5"]))
    assert (told.num_inference_steps, told.guidance_scale) == (7, 1.5)
    assert all(
        getattr(told, k) == getattr(pipe.sampling, k)
        for k in FIELDS
        if k not in ("num_inference_steps", "guidance_scale")
    )


def test_sample_prints_the_settings_it_used(capsys, tmp_path):
    defaults = LPDPipeline.from_pretrained().sampling
    assert main(["sample", "--class", "bag", "--num", "1", "--order", "raster", "--out", str(tmp_path / "x.png")]) == 0
    printed = capsys.readouterr().out
    assert (
        f"{defaults.num_inference_steps} steps" in printed
        and f"guidance {defaults.guidance_scale:g}" in printed
        and "order raster" in printed
    ), printed


def test_every_flag_of_every_command_has_help():
    """``lpdgen <command> --help`` explains each option: no flag is listed bare."""
    import argparse

    from lpdgen.cli import build_parser

    def bare(parser: argparse.ArgumentParser, path: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from bare(child, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not (action.help or "").strip():
                yield f"{path} {(action.option_strings or [action.dest])[0]}"

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"sample", "train", "train-tokenizer", "orders", "bench", "eval", "serve"} <= set(commands)
    assert list(bare(parser, "lpdgen")) == []


def test_threads_flag_reaches_torch_on_commands_without_their_own(monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    argv = ["orders", "--grid", "4", "--steps", "2", "--out", str(tmp_path / "o.json")]
    assert main([*argv, "--threads", "1"]) == 0
    assert main(argv) == 0
    assert calls == [1]
    assert main([*argv, "--threads", "-1"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    assert calls == [1]
