"""Train -> sample -> evaluate without guessing: a run of `lpdgen train` samples by its folder or any of
its weights files, with the tokenizer and settings it recorded, in `lpdgen sample`, `lpdgen eval
sample` and the demo's loader; a folder that cannot be sampled says what is missing in one line."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpdgen.cli import build_parser, main
from lpdgen.runs import load_training_checkpoint

CLASSES = 10


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """4 steps of a tiny model on 64 Fashion-MNIST images tokenized by the shipped 64-token tokenizer, as
    `lpdgen cache --tokenizer fmnist` writes them (the subset keeps it fast); checkpoints at steps 2 and 4."""
    from torch.utils.data import Subset

    from lpdgen.data import FashionMNIST
    from lpdgen.tokenizer import load_tokenizer
    from lpdgen.training.token_cache import build_token_cache

    root = tmp_path_factory.mktemp("train_to_sample")
    images = FashionMNIST()
    subset = Subset(images, range(64))
    subset.labels = images.labels[:64]
    with torch.inference_mode():
        build_token_cache(
            load_tokenizer("fmnist"), subset, root / "cache", batch_size=64, progress=False, source="fmnist"
        )
    model = root / "tiny.json"
    model.write_text(json.dumps(dict(width=32, depth=1, heads=2, vocab_size=512, num_classes=CLASSES, grid=[8, 8])))
    argv = ["train", "--data", str(root / "cache"), "--model", str(model), "--out-dir", str(root / "run")]
    argv += ["--global-batch", "16", "--steps", "4", "--lr-unit", "step", "--warmup", "1", "--decay-start", "2"]
    argv += ["--checkpoint-every", "2", "--keep-last", "0", "--sample-steps", "4", "--sample-cfg", "2.0"]
    argv += ["--device", "cpu", "--threads", "1", "--no-tensorboard"]
    assert main(argv) == 0
    return root / "run"


def test_the_run_records_its_tokenizer_and_sampling_settings(run):
    ckpt = load_training_checkpoint(run / "ckpt_00000004.pt")  # weights_only=True inside
    assert ckpt["train_config"]["tokenizer"] == "fmnist"  # from the cache's index: no --tokenizer was given
    saved = json.loads((run / "lpd.json").read_text())
    assert saved["tokenizer"] == "fmnist" and saved["config"]["vocab_size"] == 512
    assert saved["sampling"] == {"num_inference_steps": 4, "guidance_scale": 2.0}


def _sample(tmp_path: Path, capsys, *model_args: str) -> np.ndarray:
    folder = tmp_path / "imgs"
    shutil.rmtree(folder, ignore_errors=True)
    argv = ["sample", *model_args, "--class", "sneaker", "bag", "--num", "2", "--seed", "3"]
    assert main([*argv, "--out", str(tmp_path / "grid.png"), "--out-dir", str(folder), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "4 images" in printed and "4 steps" in printed and "guidance 2" in printed, printed  # the run's settings
    files = sorted(folder.glob("*.png"))
    assert [f.name.split("_")[1] for f in files] == ["class7.png", "class7.png", "class8.png", "class8.png"]
    return np.stack([np.asarray(Image.open(f)) for f in files])


def test_sample_reads_a_checkpoint_or_the_run_folder_without_config_or_tokenizer(run, tmp_path, capsys, caplog):
    from_ckpt = _sample(tmp_path, capsys, "--model", str(run / "ckpt_00000004.pt"))
    assert from_ckpt.shape == (4, 32, 32) and from_ckpt.dtype == np.uint8  # 8x8 codes of the 32-pixel tokenizer
    assert Image.open(tmp_path / "grid.png").size[0] > 2 * 32
    # the folder samples its final lpd.safetensors: the same weights as the last checkpoint, so the same images
    np.testing.assert_array_equal(_sample(tmp_path, capsys, "--model", str(run)), from_ckpt)
    np.testing.assert_array_equal(_sample(tmp_path, capsys, "--checkpoint", str(run / "ckpt_00000004.pt")), from_ckpt)
    # a run still training (no lpd.safetensors yet): its newest checkpoint, said in the log
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("ckpt_00000002.pt", "log.jsonl"):
        shutil.copy(run / name, unfinished / name)
    caplog.set_level(logging.INFO, logger="lpdgen")
    earlier = _sample(tmp_path, capsys, "--model", str(unfinished))
    assert f"--model {unfinished}: sampling ckpt_00000002.pt (its newest checkpoint)" in caplog.text
    assert earlier.shape == from_ckpt.shape and not np.array_equal(earlier, from_ckpt)  # step 2's weights differ


def test_eval_sample_takes_the_run_folder_and_its_settings(run, tmp_path):
    out = tmp_path / "s.npz"
    argv = ["eval", "sample", "--model", str(run), "--num-images", "6", "--batch-size", "4", "--device", "cpu"]
    assert main([*argv, "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f["arr_0"].shape == (6, 32, 32, 3) and f["arr_0"].dtype == np.uint8
        np.testing.assert_array_equal(f["arr_1"], np.arange(6) % CLASSES)
    manifest = json.loads((tmp_path / "s.parts" / "manifest.json").read_text())
    assert manifest["model"] == str(run)
    assert (manifest["sampling"]["num_inference_steps"], manifest["sampling"]["guidance_scale"]) == (4, 2.0)


def test_the_demo_and_cfg_search_load_a_run_like_sample(run):
    from lpdgen.commands.common import load_pipeline

    for argv in (
        ["demo", "--model", str(run)],
        ["eval", "cfg-search", "--model", str(run), "--scales", "1", "--out-dir", "d", "--ref", "fmnist"],
    ):
        pipe = load_pipeline(build_parser().parse_args([*argv, "--device", "cpu"]))
        assert pipe.model.cfg.grid == (8, 8) and pipe.tokenizer.config.codebook_size == 512
        assert (pipe.sampling.num_inference_steps, pipe.sampling.guidance_scale) == (4, 2.0)
        assert pipe.class_ids(["sneaker"]) == [7]  # a run on a shipped Fashion-MNIST tokenizer knows the names


@pytest.mark.parametrize(
    "files, message",
    [
        (["log.jsonl"], "a training run with no checkpoint yet (no lpd.safetensors or ckpt_<step>.pt)"),
        ([], "not a model folder (no pipeline.json; scripts/export_pretrained.py writes one) nor a training run"),
    ],
    ids=["started", "empty"],
)
def test_a_run_folder_without_weights_is_one_line(run, tmp_path, capsys, files, message):
    folder = tmp_path / "run"
    folder.mkdir()
    for name in files:
        shutil.copy(run / name, folder / name)
    for argv in (["sample", "--out", str(tmp_path / "x.png")], ["eval", "sample", "--out", str(tmp_path / "x.npz")]):
        assert main([*argv, "--model", str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("lpdgen ") and f"--model {folder}" in err and message in err
        assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.npz").exists()


def test_a_recorded_tokenizer_that_is_gone_is_one_line(run, tmp_path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    saved = json.loads((moved / "lpd.json").read_text())
    (moved / "lpd.json").write_text(json.dumps({**saved, "tokenizer": str(tmp_path / "gone.safetensors")}))
    assert main(["sample", "--model", str(moved), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert f"the tokenizer recorded with these weights, {tmp_path / 'gone.safetensors'}, is missing" in err
    assert f"pass --checkpoint {moved / 'lpd.safetensors'} --tokenizer FILE" in err


def test_export_turns_the_run_folder_into_a_model_folder(run, tmp_path, capsys):
    """scripts/export_pretrained.py takes the run folder (the recorded tokenizer, referenced by name) and
    its usage example writes under runs/, never into the package's own assets."""
    import importlib.util

    from lpdgen.pipeline import LPDPipeline

    script = Path(__file__).resolve().parents[1] / "scripts" / "export_pretrained.py"
    spec = importlib.util.spec_from_file_location("export_pretrained", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "src/lpdgen/assets" not in module.__doc__ and "runs/lpd_fmnist" in module.__doc__
    module.main([str(run), str(tmp_path / "folder"), "--steps", "3", "--cfg", "1.5"])
    assert json.loads((tmp_path / "folder" / "pipeline.json").read_text())["tokenizer"] == "fmnist"
    pipe = LPDPipeline.from_pretrained(tmp_path / "folder")
    assert (pipe.sampling.num_inference_steps, pipe.sampling.guidance_scale) == (3, 1.5)
    assert pipe.class_ids(["bag"]) == [8] and pipe.model.cfg.grid == (8, 8)


def test_the_five_minute_preset_is_the_model_its_docs_describe():
    """scripts/tiny_model.json, as docs/training.md ("A five-minute try") states it: 0.93M parameters on
    the 8x8 codes of the shipped 64-token tokenizer, which the trainer then records with the run."""
    from lpdgen.commands.train import model_config
    from lpdgen.model import count_parameters
    from lpdgen.tokenizer import shipped_tokenizer_for

    cfg = model_config(str(Path(__file__).resolve().parents[1] / "scripts" / "tiny_model.json"), 256, None, None)
    assert count_parameters(cfg) == 934_528 and (cfg.width, cfg.depth) == (128, 4)
    assert shipped_tokenizer_for(cfg.vocab_size, cfg.grid) == "fmnist"
