"""`lpdgen info` and `lpdgen sample` end to end on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lpdgen import LPD, LPDConfig, VQConfig, VQTokenizer
from lpdgen.cli import main

VQ = dict(image_channels=1, base_channels=32, channel_mult=(1, 2), num_res_blocks=1, z_channels=16,
          codebook_size=24, codebook_dim=4, norm_groups=8, image_size=16)


def test_info_lists_the_published_sizes_with_their_parameter_counts(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for count in ("337,157,120", "751,947,520", "1,412,184,576"):
        assert count in out


@pytest.fixture
def tiny_files(tmp_path):
    model = LPD(LPDConfig(width=32, depth=2, heads=4, vocab_size=24, num_classes=3, grid=(8, 8)))
    tok = VQTokenizer(VQConfig(**VQ))
    return model.save(tmp_path / "lpd"), tok.save(tmp_path / "vq"), tmp_path


def test_sample_writes_a_grid_and_one_file_per_image(tiny_files):
    lpd, vq, tmp = tiny_files
    args = ["sample", "--checkpoint", str(lpd), "--tokenizer", str(vq), "--steps", "6", "--cfg", "2.0",
            "--per-class", "2", "--batch-size", "4", "--out", str(tmp / "grid.png"), "--out-dir", str(tmp / "imgs")]
    assert main(args) == 0
    files = sorted((tmp / "imgs").glob("*.png"))
    assert len(files) == 6 and files[0].name == "000000_class0.png"
    grid = Image.open(tmp / "grid.png")
    assert grid.size == (2 * 18 + 2, 3 * 18 + 2)  # 2 columns (per class) x 3 rows of 16px + padding
    # image i depends on seed + i only: a rerun with another batch size gives the same pixels
    assert main([*args[:-4], "--batch-size", "5", "--out", "", "--out-dir", str(tmp / "again")]) == 0
    for a, b in zip(files, sorted((tmp / "again").glob("*.png"))):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_sample_rejects_a_tokenizer_with_another_vocabulary(tiny_files, tmp_path, capsys):
    lpd, _, _ = tiny_files
    other = VQTokenizer(VQConfig(**{**VQ, "codebook_size": 30})).save(tmp_path / "other")
    assert main(["sample", "--checkpoint", str(lpd), "--tokenizer", str(other), "--out", str(tmp_path / "x.png")]) == 2
    assert "codebook has 30 entries but the model's vocabulary is 24" in capsys.readouterr().err


def test_sample_reports_a_missing_checkpoint(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
