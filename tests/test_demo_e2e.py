"""End to end: `lpdgen demo` as a real server on a free local port, a real headless browser clicking
Generate, and the app's API (gradio_client) for bad input and for queued requests. The server is
stopped by the fixture whatever happens."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from demo_browser import (
    browser_missing,
    click,
    demo_server,
    fetch_image,
    headless_chromium,
    wait_for_click,
    wait_for_image,
)
from PIL import Image
from test_demo import COMPARE_PARAMS, EDIT_PARAMS, GENERATE_PARAMS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        browser_missing() is not None,
        reason=f"browser test needs a headless browser and the demo extras: {browser_missing()}",
    ),
]

IMAGE_SIZE = 32  # the embedded fmnist-64 model: 32x32 images from an 8x8 token grid
SCALE = 4  # the page shows 32-pixel images 4x larger (nearest neighbour)
PAD = 2  # pixels between the images of the grid


@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo") / "server.log"


@pytest.fixture(scope="module")
def server(server_log):
    # the 64-token model (the figures below assume its 8x8 grid); one waiting request at most: cheap to test
    with demo_server("--model", "fmnist-64", "--max-queue", "1", log=server_log) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def test_click_generate_shows_the_grid(server):
    """Click Generate with the page's defaults (8 images of the first class) and get 8 real pictures."""
    from selenium.webdriver.common.by import By

    with headless_chromium() as driver:
        driver.get(server)
        button = wait_for_click(driver, "generate-button")
        t0 = time.perf_counter()
        click(driver, button)
        src = wait_for_image(driver, "generate-grid")
        seconds = time.perf_counter() - t0
        summary = driver.find_element(By.CSS_SELECTOR, "#generate-summary textarea").get_attribute("value")
        animated = driver.find_elements(By.CSS_SELECTOR, "#generate-animation img")
    print(f"click to picture: {seconds:.2f} s ({summary})")
    image = np.asarray(fetch_image(src))
    cell = SCALE * (IMAGE_SIZE + PAD)
    assert image.shape == (SCALE * PAD + cell, SCALE * PAD + 8 * cell, 3)  # one row of 8
    assert summary.startswith("8 images in ")
    assert animated, "the decoding animation is shown too"
    for i in range(8):  # every cell is a picture: a garment on a dark background, not one flat colour
        x = SCALE * PAD + i * cell
        tile = image[SCALE * PAD : SCALE * (PAD + IMAGE_SIZE), x : x + SCALE * IMAGE_SIZE]
        spread = int(tile.max()) - int(tile.min())
        assert tile.std() > 10 and spread > 80, f"image {i} looks blank (std {tile.std():.1f}, range {spread})"


def test_ticking_adaptive_steps_greys_out_the_steps(server):
    """The switch hands control from the steps slider to the entropy bound, and Generate then reports the
    steps the images took."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def enabled(driver, elem_id: str) -> list[bool]:
        return [e.is_enabled() for e in driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} input")]

    with headless_chromium() as driver:
        driver.get(server)
        button = wait_for_click(driver, "generate-button")
        assert enabled(driver, "generate-steps") == [True, True] and enabled(driver, "generate-entropy-bound") == [
            False
        ]
        click(driver, driver.find_element(By.CSS_SELECTOR, "#generate-adaptive input"))
        WebDriverWait(driver, 10).until(lambda d: enabled(d, "generate-entropy-bound") == [True])
        assert enabled(driver, "generate-steps") == [False, False]
        click(driver, button)
        wait_for_image(driver, "generate-grid")
        summary = driver.find_element(By.CSS_SELECTOR, "#generate-summary textarea").get_attribute("value")
    assert summary.startswith("8 images in ") and "adaptive: " in summary and "entropy bound 32" in summary


def test_bad_input_is_the_cli_error(client, capsys):
    """A misspelt class through the API: the one-line message `lpdgen sample` prints for it, not a trace."""
    from gradio_client.exceptions import AppError

    from lpdgen.cli import main

    with pytest.raises(AppError) as err:
        client.predict("snaker", 1, 3.0, 0, 8, "locality", api_name="/generate")  # the page's order
    assert main(["sample", "--class", "snaker", "--out", ""]) == 2
    cli_line = capsys.readouterr().err.strip()
    assert str(err.value) == "unknown class name 'snaker'; did you mean 'sneaker'?"
    assert cli_line == f"lpdgen sample: error: {err.value}"


def test_the_api_takes_named_parameters_in_the_pages_order(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    names = {
        name: [p["parameter_name"] for p in api[f"/{name}"]["parameters"]] for name in ("generate", "compare", "edit")
    }
    assert names == {
        "generate": [*GENERATE_PARAMS, "adaptive_steps", "entropy_bound"],
        "compare": [*COMPARE_PARAMS, "adaptive_a", "entropy_bound_a", "adaptive_b", "entropy_bound_b"],
        "edit": [*EDIT_PARAMS, "adaptive_steps", "entropy_bound"],
    }


def test_adaptive_steps_through_the_api(client):
    """The README's call, then the same with adaptive steps by name: the summary reports the realised steps."""
    *_, fixed = client.predict(class_label="bag", num_images=2, steps=16, api_name="/generate")
    assert "16 steps = forward passes" in fixed
    *_, adaptive = client.predict(
        class_label="bag", num_images=2, steps=16, adaptive_steps=True, entropy_bound=32, api_name="/generate"
    )
    assert "adaptive: " in adaptive and "entropy bound 32" in adaptive


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(num_images="abc"), "number of images must be an integer in [1, 64], got 'abc'"),
        (dict(guidance="x"), "guidance must be a number, got 'x'"),
        (dict(steps=None), "steps must be a number, got None"),
        (
            dict(steps=100),
            "num_inference_steps must be an integer in [1, number of tokens] (this model has 64 tokens per image) or 'auto', got 100",
        ),
        (dict(seed="s"), "seed must be an integer >= 0, got 's'"),
        (dict(order=5), "order must be one of locality, raster, random, halton; got 5"),
        (dict(adaptive_steps="yes"), "adaptive steps must be true or false, got 'yes'"),
        (dict(adaptive_steps=True, entropy_bound="x"), "entropy bound must be a number, got 'x'"),
        (dict(adaptive_steps=True, entropy_bound=-1), "entropy_bound must be a finite number >= 0"),
    ],
)
def test_wrongly_typed_values_get_one_line_and_no_server_traceback(client, server_log, bad, message):
    from gradio_client.exceptions import AppError

    kwargs = dict(class_label="sneaker", num_images=1, guidance=3.0, seed=0, steps=8, order="locality") | bad
    with pytest.raises(AppError) as err:
        client.predict(**kwargs, api_name="/generate")
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)
    assert "Traceback" not in server_log.read_text()


def test_edit_through_the_api(client):
    """Load a Fashion-MNIST test image and inpaint its lower half as a dress, as the Edit tab does."""
    from gradio_client import handle_file

    from lpdgen.data import FASHION_MNIST_DIR

    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    picked = client.predict(0, api_name="/test_image")
    grid, gif, summary = client.predict(
        image=handle_file(picked),
        operation="inpaint",
        x0=0,
        y0=16,
        x1=32,
        y1=32,
        class_label="dress",
        steps=0,
        order="locality",
        guidance=3.0,
        seed=0,
        api_name="/edit",
    )
    assert summary.startswith("inpaint: kept 32 of 64 token cells, generated 32 in 8 steps")
    assert Image.open(grid).size == (2 * SCALE * IMAGE_SIZE + 3 * PAD, SCALE * IMAGE_SIZE + 2 * PAD)
    assert Image.open(gif).n_frames == 1 + 8


def test_second_request_is_queued_and_the_queue_is_bounded(server, client):
    """While one request runs, a second waits in the queue and then completes; with --max-queue 1 a
    third is refused at once, and the page itself keeps answering."""
    from gradio_client.utils import Status

    big = client.submit(
        class_label="bag", num_images=16, steps=64, guidance=3.0, seed=0, api_name="/generate"
    )  # 64 steps: seconds on a CPU
    _wait_status(big, Status.PROCESSING)
    queued = client.submit("sneaker", 1, 3.0, 1, 8, "raster", api_name="/generate")
    _wait_status(queued, Status.IN_QUEUE)
    assert not big.done()
    with urllib.request.urlopen(server, timeout=5) as r:  # the page is served while the model is busy
        assert r.status == 200
    refused = client.submit("sneaker", 1, 3.0, 2, 8, "raster", api_name="/generate")
    with pytest.raises(Exception, match="(?i)queue is full"):
        refused.result(timeout=30)
    assert not big.done(), "the refusal came while the first request still ran"
    assert big.result(timeout=60)[3].startswith("16 images in ")
    assert queued.result(timeout=60)[3].startswith("1 image in ")


def _wait_status(job, code, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while job.status().code != code:
        assert time.monotonic() < deadline, f"job never reached {code}: {job.status()}"
        time.sleep(0.02)
