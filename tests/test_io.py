"""Atomic writes and strict state-dict checks shared by every component."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from lpdgen.io import (
    CHECKPOINT_CONFIG_KEY,
    CHECKPOINT_KIND_KEY,
    CHECKSUM_KEY,
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    check_state_dict,
    load_state_dict_file,
    read_checkpoint_config,
    save_safetensors,
    tensors_sha256,
)


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


# ---------------------------------------------------------------------------------------------------
# the one checkpoint convention (network, tokenizer, classifier)
# ---------------------------------------------------------------------------------------------------


def _components():
    """One small instance of each component that saves checkpoints, with its loader."""
    from lpdgen.evaluation.classifier import ClassifierConfig, FMNISTClassifier
    from lpdgen.model import LPD, LPDConfig
    from lpdgen.tokenizer import VQConfig, VQTokenizer

    torch.manual_seed(0)
    lpd = LPD(LPDConfig(width=32, depth=2, heads=4, vocab_size=40, num_classes=5, grid=(3, 4), dropout=0.1))
    return [
        (lpd, LPD.from_checkpoint, "LPD"),
        (VQTokenizer(VQConfig.named("tiny")), VQTokenizer.from_checkpoint, "VQTokenizer"),
        (FMNISTClassifier(ClassifierConfig(channels=(4, 4, 8))), FMNISTClassifier.from_checkpoint, "FMNISTClassifier"),
    ]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_component_saves_the_same_format_and_loads_it_in_eval_mode(tmp_path, index):
    module, load, kind = _components()[index]
    module.train()
    path = module.save(tmp_path / "w")
    assert path == tmp_path / "w.safetensors"
    sidecar = json.loads((tmp_path / "w.json").read_text())
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert sidecar["kind"] == meta[CHECKPOINT_KIND_KEY] == kind
    assert sidecar["config"] == json.loads(meta[CHECKPOINT_CONFIG_KEY]) == read_checkpoint_config(path, kind)
    for only_metadata in (False, True):
        if only_metadata:  # the weights file alone carries its config
            (tmp_path / "w.json").unlink()
        loaded = load(path)
        assert not loaded.training and all(not m.training for m in loaded.modules())
        for (k, a), (k2, b) in zip(module.state_dict().items(), loaded.state_dict().items()):
            assert k == k2 and torch.equal(a, b)


def test_checkpoints_say_what_they_hold(tmp_path):
    from lpdgen.model import LPD

    tokenizer = _components()[1][0]
    path = tokenizer.save(tmp_path / "vq")
    with pytest.raises(ValueError, match="describes VQTokenizer weights, not LPD weights"):
        LPD.from_checkpoint(path)
    (tmp_path / "vq.json").unlink()
    with pytest.raises(ValueError, match="describes VQTokenizer weights, not LPD weights"):
        LPD.from_checkpoint(path)


def test_sidecars_of_lpdgen_0_1_hold_the_bare_config(tmp_path):
    from lpdgen.model import LPD

    model = _components()[0][0]
    path = save_safetensors(model.state_dict(), tmp_path / "old.safetensors")  # no metadata, as 0.1 wrote them
    atomic_write_json(model.cfg.to_dict(), tmp_path / "old.json")
    assert LPD.from_checkpoint(path).cfg == model.cfg
    assert read_checkpoint_config(tmp_path / "none.safetensors", "LPD") is None
    (tmp_path / "old.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_checkpoint_config(path, "LPD")


# --- damaged and non-finite weights ----------------------------------------------------------------------


def _flip_last_byte(path) -> None:
    """Flip one byte of the last tensor's data: the header still parses, only a value changes."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_flipped_byte_in_the_tensor_data_is_refused(tmp_path, index):
    module, load, _ = _components()[index]
    path = module.save(tmp_path / "w")
    load(path)  # intact: loads
    _flip_last_byte(path)
    with pytest.raises(ValueError, match="the weights are damaged"):
        load(path)


def test_files_without_a_checksum_still_load(tmp_path):
    from safetensors.torch import save_file

    sd = {"a": torch.arange(3.0), "b": torch.eye(2)}
    save_file(sd, str(tmp_path / "plain.safetensors"))  # what other tools (and lpdgen 0.1) write
    torch.save({"model": sd}, tmp_path / "published.pth")
    for name in ("plain.safetensors", "published.pth"):
        assert torch.equal(load_state_dict_file(tmp_path / name)["b"], sd["b"])


def test_the_checksum_covers_values_names_dtypes_and_shapes():
    base = {"a": torch.arange(4.0), "b": torch.zeros(2, dtype=torch.int64)}
    digest = tensors_sha256(base)
    assert tensors_sha256({"b": base["b"], "a": base["a"].clone()}) == digest  # order and copies do not matter
    for changed in (
        {**base, "a": base["a"] + 1e-6},
        {"a2": base["a"], "b": base["b"]},
        {**base, "a": base["a"].double()},
        {**base, "a": base["a"].view(2, 2)},
        {**base, "c": torch.tensor(1.0)},
    ):
        assert tensors_sha256(changed) != digest


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_nan_or_infinite_weights_are_refused(tmp_path, suffix):
    sd = {"w": torch.tensor([1.0, float("nan"), float("inf")]), "steps": torch.tensor([3])}
    path = tmp_path / f"bad{suffix}"
    save_safetensors(sd, path) if suffix == ".safetensors" else torch.save(sd, path)
    with pytest.raises(ValueError, match="'w' hold 2 NaN or infinite values"):
        load_state_dict_file(path)


def test_random_bytes_are_one_short_message(tmp_path):
    path = tmp_path / "random.pth"
    path.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(ValueError) as e:
        load_state_dict_file(path)
    assert "damaged or not a PyTorch file" in str(e.value) and "weights_only" not in str(e.value)
    assert len(str(e.value)) < 120 + len(str(path))


def test_the_shipped_weights_carry_their_checksum():
    from importlib import resources

    from safetensors import safe_open

    from lpdgen.embedded import EMBEDDED_MODELS, SHIPPED_TOKENIZERS

    assets = resources.files("lpdgen") / "assets"
    names = [
        *(f"{folder}/model.safetensors" for folder in EMBEDDED_MODELS.values()),
        *(f"{stem}.safetensors" for stem in dict.fromkeys(SHIPPED_TOKENIZERS.values())),
        "fmnist_classifier.safetensors",
    ]
    assert len(names) == 5  # two models, two tokenizers, the classifier: every weights file shipped
    assert sorted(p.name for p in assets.iterdir() if p.name.endswith(".safetensors")) == sorted(
        n for n in names if "/" not in n
    )
    for name in names:
        path = str(assets / name)
        with safe_open(path, framework="pt") as f:
            saved = (f.metadata() or {}).get(CHECKSUM_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        assert saved == tensors_sha256(tensors), name
