"""The README's examples run as written: its Python snippets in one namespace, in order (a later one
uses the ``pipe`` of an earlier one), and the command lines of "Edit images", from making the input PNG
to the edit. A newcomer copies these first; a snippet that names an undefined variable or a flag that
changed fails here, not on their machine.

Snippets that need downloads are skipped by the markers below (the README itself stays plain).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

import lpdgen

README = REPO / "README.md"
SRC = str(Path(lpdgen.__file__).parents[1])

# A snippet containing one of these is not run: why, in one line.
NEEDS_DOWNLOAD = {
    "lpd_l_256.pth": "needs the published ImageNet weights and tokenizer (Hugging Face Hub)",
    'LPDConfig.named("lpd-l"': "the published LPD-L network (337M parameters, 1.3 GB) and an ImageNet token batch",
}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_python_snippets_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("python")
    skipped = [b for b in blocks if any(marker in b for marker in NEEDS_DOWNLOAD)]
    assert len(skipped) == len(NEEDS_DOWNLOAD), "a skip marker matches no snippet: update NEEDS_DOWNLOAD"
    ran = [b for b in blocks if b not in skipped]
    assert any("pipe.inpaint" in b for b in ran) and any("from_pretrained()" in b for b in ran)
    namespace: dict = {}
    for block in ran:
        exec(compile(block, f"README.md snippet {blocks.index(block) + 1}", "exec"), namespace)
    # what the snippets promise
    assert Image.open("sneaker.png").size == (32, 32) and Image.open("bag.png").size == (32, 32)
    out = namespace["out"]
    # the default model has 16x16 cells of 2x2 pixels: the box (8, 8, 24, 24) keeps cells 4..11 in each direction
    assert out.known.shape == (2, 16, 16) and out.known[:, 4:12, 4:12].all() and out.known.sum() == 2 * 64


@pytest.mark.integration
def test_the_edit_command_lines_run_as_written(tmp_path):
    """The "Edit images" shell block, with `python` and `lpdgen` as this interpreter and this tree."""
    lines = [
        line
        for line in _section("Edit images").split("```bash\n", 1)[1].split("```")[0].splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [line.split()[0] for line in lines] == ["python", "lpdgen"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    for line in lines:
        argv = shlex.split(line)
        argv = [sys.executable, *argv[1:]] if argv[0] == "python" else [sys.executable, "-m", "lpdgen.cli", *argv[1:]]
        r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (line, r.stderr[-2000:])
    source = np.asarray(Image.open(tmp_path / "in.png"))
    edited = np.asarray(Image.open(tmp_path / "sneaker.png"))
    assert source.shape == edited.shape == (28, 28)  # edited at 32x32, written back at the input's size
    assert Image.open(tmp_path / "edit.gif").n_frames > 1
