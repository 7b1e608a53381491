"""Helpers to run `lpdgen demo` as a real server and drive it with headless Chromium (selenium), used
by the end-to-end test and scripts/demo_screenshot.py (which takes the README's screenshot)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
# Headless Chromium that never reaches for the network: on a closed network the background services
# (component updates, sync, QUIC probing) make it stall on start-up.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
START_TIMEOUT = 60  # seconds for `lpdgen demo` to load the model and answer HTTP
INSTALL = "apt-get install chromium chromium-driver; pip install 'lpdgen[demo-test]' (or bash scripts/setup.sh)"


def browser_missing() -> str | None:
    """Why the browser test cannot run here (None when it can): what is missing and how to install it."""
    missing = [name for name in ("selenium", "gradio", "gradio_client") if _absent(name)]
    if _chromium() is None:
        missing.append("chromium")
    if shutil.which("chromedriver") is None:
        missing.append("chromedriver")
    return f"{', '.join(missing)} not installed ({INSTALL})" if missing else None


def _absent(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def free_port() -> int:
    """A local TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def demo_server(*argv: str, port: int | None = None, log: Path | None = None) -> Iterator[str]:
    """Run ``lpdgen demo --port <free port> *argv`` as a subprocess until its page answers; yield its URL.
    The server is always stopped on exit (Ctrl-C, then kill), whatever happened in between."""
    port = port or free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    if log is None:
        fd, name = tempfile.mkstemp(prefix="lpdgen-demo-", suffix=".log")
        os.close(fd)
        log = Path(name)
    url = f"http://127.0.0.1:{port}/"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lpdgen.cli", "demo", "--port", str(port), *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lpdgen demo did not start (exit code {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Ctrl-C (gradio closes its server), then kill if it has not exited after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def headless_chromium(width: int = 1280, height: int = 1000) -> Iterator[object]:
    """A selenium driver of headless Chromium with a fresh profile, closed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lpdgen-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_click(driver, elem_id: str, timeout: float = 30.0):
    """The element ``elem_id`` once the page's scripts have drawn it and it can be clicked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(expected_conditions.element_to_be_clickable((By.ID, elem_id)))


def click(driver, element, timeout: float = 15.0) -> None:
    """Click ``element`` once nothing covers it: while the page lays itself out, another block can sit
    over a button for a moment (Selenium then refuses the click), so scroll it to the middle and retry."""
    from selenium.common.exceptions import ElementClickInterceptedException

    deadline = time.monotonic() + timeout
    while True:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        try:
            element.click()
            return
        except ElementClickInterceptedException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_for_image(driver, elem_id: str, timeout: float = 60.0, previous: str | None = None) -> str:
    """The ``src`` of the first picture inside element ``elem_id`` once one is shown (and differs from
    ``previous``)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def src(d):
        images = d.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
        value = images[0].get_attribute("src") if images else None
        return value if value and value != previous else False

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(src)


def fetch_image(url: str):
    """The picture at ``url`` as a PIL image (what the browser shows, fetched again)."""
    from PIL import Image

    with urllib.request.urlopen(url, timeout=10) as r:
        return Image.open(io.BytesIO(r.read())).convert("RGB")
