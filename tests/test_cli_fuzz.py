"""Fuzzing the CLI's inputs: any sampling flags and any bytes given as model or tokenizer file end in a
clean user error (or a valid result), never in another exception (a traceback) or a silently wrong load."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpdgen import LPD, LPDConfig, VQConfig, VQTokenizer
from lpdgen.commands.common import (
    USER_ERRORS,
    UserError,
    add_sampling_args,
    check_checkpoint_arg,
    check_sampling_args,
    load_tokenizer_arg,
)
from lpdgen.settings import FIELDS

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_sampling_args(p)
    return p.parse_args(argv)


@FUZZ
@given(
    steps=st.integers(-5, 5),
    cfg=floats,
    temperature=floats,
    top_k=st.integers(-3, 3),
    top_p=floats,
    tau=floats,
    rho=floats,
    batch=st.integers(-2, 3),
)
def test_sampling_flags_are_accepted_exactly_when_valid(steps, cfg, temperature, top_k, top_p, tau, rho, batch):
    args = _parse(
        [
            f"--steps={steps}",
            f"--cfg={cfg!r}",
            f"--temperature={temperature!r}",
            f"--top-k={top_k}",
            f"--top-p={top_p!r}",
            f"--tau={tau!r}",
            f"--rho={rho!r}",
            f"--batch-size={batch}",
            "--device=cpu",
        ]
    )
    valid = (
        steps >= 1
        and math.isfinite(cfg)
        and cfg >= 0
        and math.isfinite(temperature)
        and temperature >= 0
        and top_k >= 0
        and 0 < top_p <= 1
        and all(math.isfinite(v) and v >= 0 for v in (tau, rho))
        and batch >= 1
    )
    if valid:
        check_sampling_args(args)
    else:
        with pytest.raises(UserError):
            check_sampling_args(args)


def test_every_sampling_flag_defaults_to_the_models_own_setting():
    args = _parse([])
    assert all(getattr(args, name) is None for name in FIELDS), vars(args)
    check_sampling_args(args)


def test_the_old_guidance_flags_set_the_same_setting():
    args = _parse(["--cfg", "2.5", "--cfg-schedule", "constant"])
    assert (args.guidance_scale, args.guidance_schedule) == (2.5, "constant")


@pytest.fixture(scope="module")
def real_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    model = LPD(LPDConfig(width=32, depth=1, heads=2, vocab_size=24, num_classes=3, grid=(4, 4)))
    other = LPD(LPDConfig(width=32, depth=1, heads=2, vocab_size=30, num_classes=3, grid=(4, 4)))  # wrong shapes
    tok = VQTokenizer(VQConfig.named("tiny"))
    return {
        "model": model.save(d / "m").read_bytes(),
        "other": other.save(d / "o").read_bytes(),
        "model_json": (d / "m.json").read_bytes(),
        "tok": tok.save(d / "t").read_bytes(),
        "tok_json": (d / "t.json").read_bytes(),
        "reference": model,
    }


def _mutations():
    """(kind, payload drawer): random bytes, a truncated real file, a real file with a flipped header byte."""
    return st.one_of(
        st.tuples(st.just("random"), st.binary(min_size=0, max_size=400), st.just(0)),
        st.tuples(st.just("truncate"), st.sampled_from(["model", "other", "tok"]), st.floats(0, 0.999)),
        st.tuples(st.just("flip"), st.sampled_from(["model", "other", "tok"]), st.integers(0, 2**31)),
    )


def _payload(files, kind, what, where) -> bytes:
    if kind == "random":
        return what
    data = bytearray(files[what])
    if kind == "truncate":
        return bytes(data[: int(len(data) * where)])
    # Structure only: safetensors keeps no checksum, so a flipped byte inside tensor data loads as other
    # weights by design of the format (a checksum in the metadata would close that gap); a corrupt header must not.
    header = 8 + int.from_bytes(data[:8], "little")
    data[where % header] ^= 0xFF
    return bytes(data)


@FUZZ
@given(mutation=_mutations(), suffix=st.sampled_from([".safetensors", ".pt", ".pth", ".txt"]), with_json=st.booleans())
def test_any_model_file_loads_correctly_or_fails_cleanly(tmp_path, real_files, mutation, suffix, with_json):
    kind, what, where = mutation
    path = tmp_path / f"model{suffix}"
    path.write_bytes(_payload(real_files, kind, what, where))
    json_path = path.with_suffix(".json")
    json_path.unlink(missing_ok=True)
    if with_json:
        json_path.write_bytes(real_files["model_json"])
    try:
        model = LPD.from_checkpoint(check_checkpoint_arg(path, None), image_size=256)
    except USER_ERRORS:
        return
    ref = real_files["reference"].state_dict()  # loaded: then it must be the real weights, exactly
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


@FUZZ
@given(mutation=_mutations(), with_json=st.booleans())
def test_any_tokenizer_file_loads_or_fails_cleanly(tmp_path, real_files, mutation, with_json):
    kind, what, where = mutation
    path = tmp_path / "tok.safetensors"
    path.write_bytes(_payload(real_files, kind, what, where))
    path.with_suffix(".json").unlink(missing_ok=True)
    if with_json:
        path.with_suffix(".json").write_bytes(real_files["tok_json"])
    try:
        tok = load_tokenizer_arg(str(path))
    except USER_ERRORS:
        return
    assert isinstance(tok, VQTokenizer) and np.isfinite(sum(float(v.float().sum()) for v in tok.state_dict().values()))
