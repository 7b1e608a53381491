"""Atomic writes and strict state-dict checks shared by every component."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from lpdgen.io import atomic_torch_save, atomic_write, check_state_dict, load_state_dict_file, save_safetensors


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "ckpt.pt"
    atomic_torch_save({"model": {"w": torch.ones(2)}}, target)

    def crash(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert torch.equal(load_state_dict_file(target)["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_safetensors_and_pickles_load_as_state_dicts(tmp_path):
    sd = {"a": torch.arange(3.0), "b.weight": torch.eye(2)}
    save_safetensors(sd, tmp_path / "x.safetensors")
    torch.save({"model": sd, "step": 3}, tmp_path / "x.pth")
    for name in ("x.safetensors", "x.pth"):
        got = load_state_dict_file(tmp_path / name)
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    torch.save({"model": sd, "opt": [1, 2]}, tmp_path / "odd.pth")
    assert set(load_state_dict_file(tmp_path / "odd.pth")) == set(sd)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        load_state_dict_file(tmp_path / "list.pth")


def test_pickles_with_code_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": {"w": torch.ones(1)}, "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_state_dict_file(tmp_path / "evil.pth")


def test_check_state_dict_names_every_problem():
    expected = {"a": (2,), "b": (3, 3), "c": (1,)}
    found = {"a": torch.zeros(2), "b": torch.zeros(3, 4), "d": torch.zeros(1)}
    with pytest.raises(ValueError) as err:
        check_state_dict(expected, found, what="test ckpt")
    msg = str(err.value)
    assert "test ckpt does not match" in msg and "missing keys: c" in msg
    assert "unexpected keys: d" in msg and "b: checkpoint (3, 4) vs model (3, 3)" in msg
    check_state_dict(expected, {"a": torch.zeros(2), "b": torch.zeros(3, 3), "c": torch.zeros(1)})
