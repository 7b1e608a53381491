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


def _bench_args(*argv: str):
    from lpdgen.cli import build_parser

    return build_parser().parse_args(["bench", *argv])


def test_defaults_time_the_embedded_architecture_on_cpu_and_lpd_l_on_cuda():
    import torch

    from lpdgen.commands.bench import bench_plan
    from lpdgen.pipeline import LPDPipeline

    cpu = bench_plan(_bench_args(), torch.device("cpu"))
    own = LPDPipeline.from_pretrained("fmnist-256")  # the default embedded model: its shape and its settings
    assert cpu.name == "fmnist-256" and cpu.cfg == own.model.cfg and cpu.cfg.grid == (16, 16)
    assert cpu.steps == [own.sampling.num_inference_steps, 256] == [20, 256]  # its own count, one token per step
    assert cpu.guidance_scale == own.sampling.guidance_scale == 4.0
    assert (cpu.variants, cpu.batches, cpu.tokenizer) == (["fp32", "int8"], [1, 16], "fmnist-256")
    cuda = bench_plan(_bench_args(), torch.device("cuda"))  # resolution only: nothing runs on the device
    assert (cuda.name, cuda.cfg.width, cuda.cfg.depth, cuda.cfg.grid) == ("lpd-l", 1024, 24, (16, 16))
    assert (cuda.steps, cuda.batches, cuda.guidance_scale) == ([20, 32, 256], [1, 64], 4.8)
    assert cuda.variants == ["fp32", "bf16", "bf16-compiled"] and cuda.tokenizer == "vq-16"
    small = bench_plan(_bench_args("--config", "fmnist-64", "--throughput-batch", "0"), torch.device("cpu"))
    assert (small.cfg.grid, small.steps, small.batches, small.guidance_scale) == ((8, 8), [8, 64], [1], 3.0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "fmnist-128"], "unknown architecture 'fmnist-128'; choose one of fmnist-64, fmnist-256, lpd-l"),
        (["--config", "fmnist-64", "--image-size", "64"], "--image-size does not apply to --config fmnist-64"),
        (["--config", "fmnist-64", "--steps", "100"], "--steps 100"),
        (["--config", "tiny", "--repeats", "0"], "need --repeats >= 1"),
    ],
)
def test_bench_input_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main(["bench", *argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("lpdgen bench: error: ") and message in err, err


def test_every_bench_flag_has_help():
    import argparse

    from lpdgen.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = [a for a in sub.choices["bench"]._actions if a.option_strings and a.dest != "help"]
    assert len(flags) >= 14
    missing = [a.option_strings[0] for a in flags if not (a.help or "").strip()]
    assert not missing


TINY = ["--config", "tiny", "--image-size", "64", "--steps", "4", "16", "--throughput-batch", "3"]


def test_the_time_estimate_is_logged_before_the_timed_rows(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="lpdgen")
    argv = ["bench", *TINY, "--tokenizer", "tiny", "--repeats", "2", "--out-dir", str(tmp_path)]
    assert main(argv) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "lpdgen.commands.bench"]
    estimate = next(i for i, line in enumerate(lines) if line.startswith("about ") and " to go: " in line)
    first_row = next(i for i, line in enumerate(lines) if line.startswith("fp32 batch 1, 4 steps: "))
    assert estimate < first_row
    # 2 variants x 2 batches x 2 step counts; what would make it shorter, and only what applies
    assert "8 rows of 1 warm-up + 2 timed calls" in lines[estimate]
    assert lines[estimate].endswith("shorter: --repeats 1, fewer --steps, --throughput-batch 0, fewer --variants")
    argv = ["bench", *TINY[:4], "--steps", "4", "--throughput-batch", "0", "--variants", "fp32", "--repeats", "1"]
    caplog.clear()
    assert main([*argv, "--tokenizer", "", "--out-dir", str(tmp_path)]) == 0
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("about "))
    assert "1 row of 1 warm-up + 1 timed calls" in line and "shorter" not in line


def test_rows_are_in_bench_json_when_the_run_is_interrupted(tmp_path, capsys, monkeypatch):
    """Ctrl-C during the second row: the first row is already in bench.json, and the message says so."""
    from lpdgen.commands import bench

    real = bench._median_seconds
    calls = []

    def interrupted_on_the_second_row(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "_median_seconds", interrupted_on_the_second_row)
    argv = ["bench", *TINY, "--tokenizer", "", "--repeats", "1", "--out-dir", str(tmp_path)]
    assert main(argv) == 130
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["complete"] is False and result["model"] == "tiny"
    assert [(r["variant"], r["batch"], r["steps"]) for r in result["rows"]] == [("fp32", 1, 4)]
    assert result["rows"][0]["seconds"] > 0 and result["rows"][0]["speedup"] is None  # its 16-step baseline never ran
    assert not (tmp_path / "bench_speedup.png").exists()
    err = capsys.readouterr().err
    assert f"lpdgen bench: interrupted; 1 row measured before the interruption kept in {tmp_path / 'bench.json'}" in err


def test_recompile_limit_warnings_are_counted_not_printed(capfd):
    """The warning torch prints when a compiled int8 step hits dynamo's recompile limit (its exact
    format string, torch 2.13) is dropped inside the bench; other records of that logger still show."""
    import logging

    from lpdgen.commands.bench import quiet_recompiles

    logger = logging.getLogger("torch._dynamo.convert_frame")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        with quiet_recompiles() as counted:
            logger.warning(
                "torch._dynamo hit config.%s (%s)\n   function: %s\n   last reason: %s\n"
                'To log all recompilation reasons, use TORCH_LOGS="recompiles".\nTo diagnose recompilation issues, see %s',
                "recompile_limit",
                8,
                "'forward_cached' (model.py:246)",
                "1/7: queries is None",
                "https://docs.pytorch.org",
            )
            logger.error("a real failure")
        logger.warning("torch._dynamo hit config.recompile_limit (8)")  # outside: printed as before
    finally:
        logger.removeHandler(handler)
    err = capfd.readouterr().err
    assert counted.dropped == 1
    assert "a real failure" in err and err.count("recompile_limit") == 1 and "forward_cached" not in err
