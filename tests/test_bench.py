"""`lpdgen bench`: the table, JSON and speed-up plot it writes, and its input checks."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from lpdgen.cli import main


def test_bench_writes_rows_for_every_variant_batch_and_step_count(tmp_path, capsys):
    argv = [
        "bench",
        "--config",
        "tiny",
        "--image-size",
        "64",
        "--steps",
        "4",
        "16",
        "--throughput-batch",
        "3",
        "--variants",
        "fp32",
        "int8",
        "--tokenizer",
        "tiny",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--out-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = result["rows"]
    assert {(r["variant"], r["batch"], r["steps"]) for r in rows} == {
        (v, b, s) for v in ("fp32", "int8") for b in (1, 3) for s in (4, 16)
    }
    for r in rows:
        assert r["seconds"] > 0 and r["images_per_s"] == pytest.approx(r["batch"] / r["seconds"])
        if r["variant"] == "fp32" and r["steps"] == 16:
            assert r["speedup"] == 1.0  # the one-token fp32 row is the reference of its batch
    assert [t["batch"] for t in result["tokenizer"]] == [1, 3]
    with Image.open(tmp_path / "bench_speedup.png") as img:
        assert img.mode == "RGB" and img.size[0] > 2 * img.size[1]  # one panel per batch
        colors = {c for _, c in img.getcolors(maxcolors=1 << 16)}
    assert {(90, 90, 90), (31, 119, 180)} <= colors  # bars of both variants were drawn
    out = capsys.readouterr().out
    assert "int8" in out and "tokenizer decode (tiny), batch 3" in out


def test_bench_rejects_a_step_count_without_a_schedule(tmp_path, capsys):
    argv = [
        "bench",
        "--config",
        "tiny",
        "--image-size",
        "64",
        "--steps",
        "17",
        "--tokenizer",
        "",
        "--out-dir",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "steps" in capsys.readouterr().err
