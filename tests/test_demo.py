"""The demo's tab functions without a browser: validation with the library's messages, pictures equal to
the pipeline's own output for the same seeds, the page's queue and events, and gradio kept optional."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from lpdgen.cli import main
from lpdgen.demo import (
    KEEP_FILES_S,
    MAX_IMAGES,
    MODEL_SLOT,
    REGENERATE_TINT,
    adaptive_steps_text,
    check_edit,
    check_request,
    class_choices,
    compare,
    edit,
    edit_preview,
    fashion_mnist_test_image,
    generate,
    grid_picture,
)
from lpdgen.orders.draw import draw_order
from lpdgen.rng import image_seeds
from lpdgen.settings import DEFAULT_ENTROPY_BOUND


def test_check_request_normalises_web_values(pipe):
    """Forms send numbers as floats and classes as typed text; the request holds ids and ints."""
    r = check_request(pipe, "ankle boot", 3.0, 8.0, 2.5, "raster", 7.0)
    assert (r.class_id, r.num_images, r.steps, r.guidance, r.order, r.seed) == (9, 3, 8, 2.5, "raster", 7)
    assert isinstance(r.steps, int) and isinstance(r.num_images, int)
    assert check_request(pipe, "7", 1, 1, 1.0, "halton", 0).class_id == 7
    assert r.seeds == image_seeds(7, range(3))  # image i: the seed `lpdgen sample --seed 7` gives image i


@pytest.mark.parametrize(
    "args, message",
    [
        (("snaker", 1, 8, 3.0, "locality", 0), "unknown class name 'snaker'; did you mean 'sneaker'?"),
        (("10", 1, 8, 3.0, "locality", 0), "class id 10 is out of range: this model has classes 0..9"),
        (("", 1, 8, 3.0, "locality", 0), "choose a class"),
        (("bag", 0, 8, 3.0, "locality", 0), f"number of images must be an integer in [1, {MAX_IMAGES}], got 0"),
        (("bag", MAX_IMAGES + 1, 8, 3.0, "locality", 0), f"number of images must be an integer in [1, {MAX_IMAGES}]"),
        (("bag", 2.5, 8, 3.0, "locality", 0), "number of images must be an integer"),
        (
            ("bag", 1, 0, 3.0, "locality", 0),
            "num_inference_steps must be an integer in [1, number of tokens] (this model has 64 tokens",
        ),
        (("bag", 1, 65, 3.0, "locality", 0), "steps must be an integer in [1, number of tokens]"),
        (("bag", 1, 8, -1.0, "locality", 0), "guidance_scale must be a finite number >= 0 (1 = no guidance), got -1.0"),
        (("bag", 1, 8, float("nan"), "locality", 0), "guidance_scale must be a finite number >= 0"),
        (("bag", 1, 8, None, "locality", 0), "guidance must be a number, got None"),
        (("bag", 1, None, 3.0, "locality", 0), "steps must be a number, got None"),
        # what an API client may send: text or lists where numbers belong, each the same one line
        (("bag", "abc", 8, 3.0, "locality", 0), "number of images must be an integer in [1, 64], got 'abc'"),
        (("bag", 1, "8", 3.0, "locality", 0), "steps must be a number, got '8'"),
        (("bag", 1, 8, "x", "locality", 0), "guidance must be a number, got 'x'"),
        (("bag", 1, 8, 3.0, 5, 0), "order must be one of locality, raster, random, halton; got 5"),
        (("bag", 1, 8, 3.0, "locality", "s"), "seed must be an integer >= 0, got 's'"),
        (("bag", True, 8, 3.0, "locality", 0), "number of images must be an integer in [1, 64], got True"),
        (([1], 1, 8, 3.0, "locality", 0), "class label must be an id or a name, got list"),
        (("bag", 1, 8, 3.0, "spiral", 0), "order must be one of locality, raster, random, halton; got 'spiral'"),
        (("bag", 1, 8, 3.0, "locality", -1), "seed must be an integer >= 0, got -1"),
        (("bag", 1, 8, 3.0, "locality", None), "seed must be an integer >= 0, got None"),
        # adaptive steps: the switch and its bound
        (("bag", 1, 8, 3.0, "locality", 0, "yes", 32.0), "adaptive steps must be true or false, got 'yes'"),
        (("bag", 1, 8, 3.0, "locality", 0, 1, 32.0), "adaptive steps must be true or false, got 1"),
        (
            ("bag", 1, 8, 3.0, "locality", 0, True, -1.0),
            "entropy_bound must be a finite number >= 0 (nats; 0 = one token per step), got -1.0",
        ),
        (("bag", 1, 8, 3.0, "locality", 0, True, float("inf")), "entropy_bound must be a finite number >= 0"),
        (("bag", 1, 8, 3.0, "locality", 0, True, "32"), "entropy bound must be a number, got '32'"),
        (("bag", 1, 8, 3.0, "locality", 0, True, [32]), "entropy bound must be a number, got [32]"),
        (
            ("bag", 1, 8, 3.0, "raster", 0, True, 32.0),
            "num_inference_steps='auto' picks its cells with the locality-aware rule; order 'raster' is a fixed order",
        ),
    ],
)
def test_check_request_refuses_bad_input_with_one_clear_line(pipe, args, message):
    with pytest.raises(ValueError) as err:
        check_request(pipe, *args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_check_request_takes_adaptive_steps(pipe):
    """Ticked, the steps slider is ignored (whatever it holds) and the bound is the one given, or the
    model's own; unticked, the bound is ignored (the page greys it out)."""
    r = check_request(pipe, "bag", 2, 8, 3.0, "locality", 0, True, 12.5)
    assert (r.steps, r.entropy_bound, r.adaptive) == ("auto", 12.5, True)
    assert check_request(pipe, "bag", 2, None, 3.0, "locality", 0, True, 0).entropy_bound == 0.0
    assert check_request(pipe, "bag", 2, 8, 3.0, "locality", 0, True, None).entropy_bound == DEFAULT_ENTROPY_BOUND
    fixed = check_request(pipe, "bag", 2, 8, 3.0, "raster", 0, False, "not a number")
    assert (fixed.steps, fixed.entropy_bound, fixed.adaptive) == (8, None, False)


def test_adaptive_steps_text():
    assert adaptive_steps_text([5, 4, 7, 6], 32.0) == "adaptive: 5.5 steps per image on average (4-7), entropy bound 32"
    assert adaptive_steps_text([1], 0.5) == "adaptive: 1 step per image, entropy bound 0.5"


def test_validation_messages_are_the_libraries(pipe):
    """A demo error for a class or a step count is word for word what the pipeline (and so `lpdgen sample`) says."""
    for bad_class in ("snaker", "12"):
        with pytest.raises(ValueError) as lib:
            pipe([bad_class], output_type="codes")
        with pytest.raises(ValueError) as demo:
            check_request(pipe, bad_class, 1, 8, 3.0, "locality", 0)
        assert str(demo.value) == str(lib.value)
    with pytest.raises(ValueError) as lib:
        pipe([0], num_inference_steps=65, output_type="codes")
    with pytest.raises(ValueError) as demo:
        check_request(pipe, 0, 1, 65, 3.0, "locality", 0)
    assert str(demo.value) == str(lib.value)


def test_generate_shows_the_pipelines_images_order_and_decoding(pipe, tmp_path):
    g = generate(pipe, "sneaker", 3, 4, 2.0, "random", 5, workdir=tmp_path)
    ref = pipe(
        [7] * 3,
        num_inference_steps=4,
        guidance_scale=2.0,
        order="random",
        seeds=image_seeds(5, range(3)),
        output_type="np",
    )
    expected = np.full((4 * 36, 4 * (3 * 34 + 2), 3), 255, np.uint8)  # 1 row of 3: pad 2, each image 4x larger
    for i, im in enumerate(ref.images):
        big = np.kron(im[..., 0], np.ones((4, 4), np.uint8))[..., None]
        expected[8:136, 4 * (2 + 34 * i) : 4 * (2 + 34 * i) + 128] = big
    np.testing.assert_array_equal(g.grid, expected)
    np.testing.assert_array_equal(
        g.order_map,
        np.asarray(
            draw_order(ref.orders[0], ref.group_sizes, (8, 8), title="random order, 4 steps: the step of each cell")
        ),
    )
    with Image.open(g.animation) as gif:
        assert gif.n_frames == 4  # one frame per step
    assert g.animation.parent == tmp_path
    assert g.summary.startswith("3 images in ")
    per_image = float(g.summary.split(": ")[1].split(" ms per image")[0])
    assert per_image == pytest.approx(1e3 * g.seconds / 3, abs=0.06)
    assert "4 steps" in g.summary and "random order" in g.summary and "seed 5" in g.summary


def test_generate_with_adaptive_steps_is_the_pipelines(pipe, tmp_path):
    """Adaptive steps: the pipeline's images for the same seeds, and the summary, order map and animation
    report the steps each image realised (they differ between images)."""
    g = generate(pipe, "sneaker", 4, 8, 2.0, "locality", 5, True, 20.0, workdir=tmp_path)
    ref = pipe(
        [7] * 4,
        num_inference_steps="auto",
        entropy_bound=20.0,
        guidance_scale=2.0,
        seeds=image_seeds(5, range(4)),
        output_type="np",
    )
    assert len(set(ref.num_steps)) > 1  # the case that matters: images of one request differ
    np.testing.assert_array_equal(g.grid, grid_picture(ref.images))
    steps = sorted(ref.num_steps)
    mean = sum(steps) / len(steps)
    assert f"adaptive: {mean:.1f} steps per image on average ({steps[0]}-{steps[-1]}), entropy bound 20" in g.summary
    assert f"; {steps[-1]} forward passes for the batch, locality order" in g.summary
    per_step = float(g.summary.split("per image, ")[1].split(" ms per step")[0])
    assert per_step == pytest.approx(1e3 * g.seconds / steps[-1], abs=0.06)  # the batch's realised passes
    first = ref.num_steps[0]
    title = f"adaptive, {first} steps: the step of each cell"
    np.testing.assert_array_equal(g.order_map, np.asarray(draw_order(ref.orders[0], ref.group_sizes[0], (8, 8), title)))
    with Image.open(g.animation) as gif:
        assert gif.n_frames == first  # the first image's own steps


def test_grid_picture_layout():
    """At most 8 per row, grey images shown as RGB, the last row padded with white."""
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 1), dtype=np.uint8)
    grid = grid_picture(images)
    assert grid.shape == (4 * (2 * 34 + 2), 4 * (8 * 34 + 2), 3)
    np.testing.assert_array_equal(grid[8:136, 8:136, 0], np.kron(images[0, ..., 0], np.ones((4, 4), np.uint8)))
    assert (grid[4 * 36 :, 4 * (2 * 34 + 2) :] == 255).all()  # no third image on the second row


def test_compare_uses_the_same_seeds_on_both_sides(pipe, tmp_path):
    a, b = compare(pipe, "bag", 2, 3.0, 1, 8, "locality", 16, "raster", workdir=tmp_path)
    same, _ = compare(pipe, "bag", 2, 3.0, 1, 8, "locality", 8, "locality", workdir=tmp_path)
    np.testing.assert_array_equal(a.grid, same.grid)  # a side is a function of (class, seed, steps, order) only
    assert (a.request.steps, a.request.order, b.request.steps, b.request.order) == (8, "locality", 16, "raster")
    assert a.request.seeds == b.request.seeds
    assert not np.array_equal(a.order_map, b.order_map)
    with Image.open(b.animation) as gif:
        assert gif.n_frames == 16


def test_compare_checks_both_sides_before_running(pipe, tmp_path):
    with pytest.raises(ValueError, match="order must be one of locality, raster, random, halton; got 'spiral'"):
        compare(pipe, "bag", 2, 3.0, 1, 8, "locality", 8, "spiral", workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the valid left side did not run either


def test_compare_fixed_against_adaptive_steps(pipe, tmp_path):
    """One side adaptive, the other fixed: each side is what Generate gives for its settings, and a
    side asking adaptive steps in a fixed order is refused before either side runs."""
    a, b = compare(pipe, "bag", 2, 3.0, 1, 8, "locality", 8, "locality", False, None, True, 50.0, workdir=tmp_path)
    assert (a.request.steps, b.request.steps, b.request.entropy_bound) == (8, "auto", 50.0)
    alone = generate(pipe, "bag", 2, 8, 3.0, "locality", 1, True, 50.0, workdir=tmp_path)
    np.testing.assert_array_equal(b.grid, alone.grid)
    assert "adaptive: " in b.summary and "8 steps = forward passes" in a.summary
    for gif in tmp_path.iterdir():
        gif.unlink()
    with pytest.raises(ValueError, match="order 'halton' is a fixed order"):
        compare(pipe, "bag", 2, 3.0, 1, 8, "locality", 8, "halton", False, None, True, 50.0, workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_class_choices(pipe):
    assert class_choices(pipe)[0] == "T-shirt/top" and len(class_choices(pipe)) == 10
    assert all(check_request(pipe, c, 1, 1, 1.0, "raster", 0).class_id == i for i, c in enumerate(class_choices(pipe)))


# ---- the page and the command -------------------------------------------------------------------------


def test_app_queues_every_event_on_one_model_slot(pipe, tmp_path):
    """Generate and Compare share one concurrency slot of size 1 (one model; one cache, not safe
    for two threads at once), the queue is bounded, and bad input becomes a gr.Error with the same message."""
    gr = pytest.importorskip("gradio", reason="the page needs the demo extra: pip install 'lpdgen[demo]'")
    from lpdgen.demo import build_app

    app = build_app(pipe, workdir=tmp_path, max_queue=3)
    events = {fn.api_name: fn for fn in app.fns.values() if fn.api_visibility == "public"}
    assert set(events) == {"generate", "compare", "edit", "test_image"}
    model_events = [fn for fn in app.fns.values() if fn.queue]  # the box preview and Load skip the queue
    assert sorted(fn.api_name for fn in model_events) == ["compare", "edit", "generate"]
    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in model_events} == {(MODEL_SLOT, 1)}
    assert app._queue.max_size == 3
    with pytest.raises(gr.Error, match="did you mean 'sneaker'"):
        events["generate"].fn("snaker", 1, 3.0, 0, 8, "locality")
    with pytest.raises(gr.Error) as err:
        events["generate"].fn("bag", 1, 3.0, 0, 8, "locality", True, "x")
    assert err.value.message == "entropy bound must be a number, got 'x'"
    *_, summary = events["generate"].fn("bag", 1, 3.0, 0, 8, "locality", True, 32.0)
    assert "adaptive: " in summary and "entropy bound 32" in summary
    grid, gif, order_map, summary = events["generate"].fn("bag", 1.0, 3.0, 0.0, 2.0, "halton")
    assert grid.shape == (4 * 36, 4 * 36, 3) and gif.endswith(".gif") and summary.startswith("1 image in ")
    a_grid, a_gif, a_summary, b_grid, b_gif, b_summary = events["compare"].fn(
        "bag", 1, 3.0, 0, 2, "raster", 4, "halton"
    )
    assert a_grid.shape == b_grid.shape == (4 * 36, 4 * 36, 3) and a_gif.endswith(".gif")
    assert "2 steps" in a_summary and "4 steps" in b_summary and b_gif.endswith(".gif")
    with pytest.raises(ValueError, match="max_queue must be >= 1"):
        build_app(pipe, workdir=tmp_path, max_queue=0)


# the API's parameters before adaptive steps came: calls written for them keep working
GENERATE_PARAMS = ["class_label", "num_images", "guidance", "seed", "steps", "order"]
COMPARE_PARAMS = ["class_label", "num_images", "guidance", "seed", "steps_a", "order_a", "steps_b", "order_b"]
EDIT_PARAMS = ["image", "operation", "x0", "y0", "x1", "y1", "class_label", "steps", "order", "guidance", "seed"]


def test_the_api_names_its_parameters_in_the_pages_order_and_the_edit_tab_opens_with_an_image(pipe, tmp_path):
    """gradio_client users call `/generate` with the names and in the order the page shows its widgets;
    the Edit tab has a test image (and its box preview) before anything is clicked."""
    pytest.importorskip("gradio", reason="the page needs the demo extra: pip install 'lpdgen[demo]'")
    from lpdgen.demo import build_app

    app = build_app(pipe, workdir=tmp_path)
    api = app.get_api_info()["named_endpoints"]
    for name, params in (
        ("generate", [*GENERATE_PARAMS, "adaptive_steps", "entropy_bound"]),
        ("compare", [*COMPARE_PARAMS, "adaptive_a", "entropy_bound_a", "adaptive_b", "entropy_bound_b"]),
        ("edit", [*EDIT_PARAMS, "adaptive_steps", "entropy_bound"]),
    ):
        assert [p["parameter_name"] for p in api[f"/{name}"]["parameters"]] == params
        added = api[f"/{name}"]["parameters"][-4 if name == "compare" else -2 :]
        assert all(p["parameter_has_default"] for p in added), name  # earlier calls work unchanged
        event = next(fn for fn in app.fns.values() if fn.api_name == name)
        page = [b.elem_id for b in app.blocks.values() if b in event.inputs]  # the blocks in layout order
        assert [b.elem_id for b in event.inputs] == page, name
    blocks = {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None)}
    assert blocks["edit-image"].value is not None and blocks["edit-preview"].value is not None


def test_gradio_is_not_imported_by_the_package_or_other_commands():
    code = (
        "import sys, lpdgen, lpdgen.demo, lpdgen.cli; lpdgen.cli.build_parser(); "
        "lpdgen.cli.main(['info']); assert 'gradio' not in sys.modules, 'gradio imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


def test_missing_gradio_is_one_line_with_the_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError, as when not installed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["demo", "--port", str(port)]) == 2
    assert capsys.readouterr().err == "lpdgen demo: error: the demo needs gradio: pip install 'lpdgen[demo]'\n"


def test_busy_port_and_bad_flags_are_refused_before_loading(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["demo", "--port", str(port), "--model", "/does/not/exist"]) == 2  # port checked first
    assert f"--port {port}: cannot listen there" in capsys.readouterr().err
    assert main(["demo", "--port", "70000"]) == 2
    assert "--port must be in [1, 65535], got 70000" in capsys.readouterr().err
    assert main(["demo", "--max-queue", "0"]) == 2
    assert "--max-queue must be >= 1, got 0" in capsys.readouterr().err


def test_seeded_generation_is_independent_of_batch(pipe, tmp_path):
    """Image i of a request is the same picture whether 1 or 3 are asked for (per-image seeds)."""
    one = generate(pipe, "dress", 1, 4, 3.0, "locality", 2, workdir=tmp_path)
    three = generate(pipe, "dress", 3, 4, 3.0, "locality", 2, workdir=tmp_path)
    np.testing.assert_array_equal(one.grid[:, : one.grid.shape[1] - 8], three.grid[:, : one.grid.shape[1] - 8])
    np.testing.assert_array_equal(one.order_map, three.order_map)


# ---- the Edit tab ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def boot() -> np.ndarray:
    """A 32x32 picture to edit (a real test image when Fashion-MNIST is installed, else a bright blob)."""
    try:
        return fashion_mnist_test_image(0)  # an ankle boot
    except FileNotFoundError:
        image = np.zeros((32, 32), np.uint8)
        image[8:26, 6:28] = 200
        return image


@pytest.mark.parametrize(
    "operation, box, cells",
    [
        ("inpaint", (1, 1, 5, 5), {(0, 0), (0, 1), (1, 0), (1, 1)}),  # touched cells are regenerated
        ("outpaint", (1, 1, 9, 9), None),  # only cell (1, 1) lies wholly inside: every other cell is regenerated
    ],
)
def test_check_edit_marks_token_cells(pipe, boot, operation, box, cells):
    r = check_edit(pipe, boot, box, operation, "dress", 0, 3.0, "locality", 0)
    regenerated = {tuple(ij) for ij in np.argwhere(r.regenerate).tolist()}
    expected = cells if cells is not None else {(i, j) for i in range(8) for j in range(8)} - {(1, 1)}
    assert regenerated == expected
    assert (r.class_id, r.steps, r.image.shape) == (3, None, (32, 32, 1))


@pytest.mark.parametrize(
    "image, box, operation, steps, message",
    [
        (None, (0, 0, 8, 8), "inpaint", 0, "choose a test image or upload one"),
        (
            np.zeros((28, 28), np.uint8),
            (0, 0, 8, 8),
            "inpaint",
            0,
            "images are 28x28 pixels; this model edits 32x32 images",
        ),
        ("boot", (8, 0, 8, 8), "inpaint", 0, "box (8, 0, 8, 8) is out of range"),
        ("boot", (0, 0, 40, 8), "inpaint", 0, "box (0, 0, 40, 8) is out of range"),
        ("boot", (0, 0, 8, 8), "erase", 0, "unknown operation 'erase'"),
        ("boot", (0, 0, 8, 8), "inpaint", 5, "steps must be an integer in [0, 4], got 5"),  # 4 cells: at most 4 steps
        ("boot", (0, "a", 8, 8), "inpaint", 0, "the box needs four numbers x0 y0 x1 y1, got (0, 'a', 8, 8)"),
        ("boot", (0, 0, 8, 8), "inpaint", "2", "steps must be an integer in [0, 4], got '2'"),
        ("boot", (0, 0, 8, 8), ["inpaint"], 0, "unknown operation ['inpaint']"),
        ("picture.png", (0, 0, 8, 8), "inpaint", 0, "images must be uint8 pixels"),
    ],
)
def test_check_edit_refuses_bad_input(pipe, boot, image, box, operation, steps, message):
    with pytest.raises(ValueError) as err:
        check_edit(
            pipe,
            boot if isinstance(image, str) and image == "boot" else image,
            box,
            operation,
            "dress",
            steps,
            3.0,
            "locality",
            0,
        )
    assert message in str(err.value)


def test_edit_is_the_pipelines_inpaint(pipe, boot, tmp_path):
    """The tab's result is pipe.inpaint with the same cells and seed; the kept cells keep their codes."""
    g = edit(pipe, boot, (0, 16, 32, 32), "inpaint", "dress", 4, 3.0, "locality", 3, workdir=tmp_path)
    lower = np.zeros((8, 8), bool)
    lower[4:] = True
    ref = pipe.inpaint(
        boot[None],
        lower,
        ["dress"],
        num_inference_steps=4,
        guidance_scale=3.0,
        seeds=image_seeds(3, [0]),
        output_type="np",
    )
    np.testing.assert_array_equal(g.grid[2:130, -130:-2], np.kron(ref.images[0], np.ones((4, 4, 3), np.uint8)))
    assert torch.equal(ref.codes[0, :4].cpu(), pipe.encode(boot[None])[0, :4].cpu())
    with Image.open(g.animation) as gif:
        assert gif.n_frames == 1 + 4  # the kept tokens, then one frame per step
    assert g.summary.startswith("inpaint: kept 32 of 64 token cells, generated 32 in 4 steps")


def test_edit_with_adaptive_steps_is_the_pipelines_inpaint(pipe, boot, tmp_path):
    g = edit(pipe, boot, (0, 16, 32, 32), "inpaint", "dress", 4, 3.0, "locality", 3, True, 20.0, workdir=tmp_path)
    lower = np.zeros((8, 8), bool)
    lower[4:] = True
    ref = pipe.inpaint(
        boot[None],
        lower,
        ["dress"],
        num_inference_steps="auto",
        entropy_bound=20.0,
        guidance_scale=3.0,
        seeds=image_seeds(3, [0]),
        output_type="np",
    )
    np.testing.assert_array_equal(g.grid[2:130, -130:-2], np.kron(ref.images[0], np.ones((4, 4, 3), np.uint8)))
    (steps,) = ref.num_steps
    assert g.summary.startswith(
        f"inpaint: kept 32 of 64 token cells, generated 32 in {steps} adaptive steps (entropy bound 20) in "
    )
    with Image.open(g.animation) as gif:
        assert gif.n_frames == 1 + steps
    with pytest.raises(ValueError, match="entropy_bound must be a finite number >= 0"):
        check_edit(pipe, boot, (0, 16, 32, 32), "inpaint", "dress", 0, 3.0, "locality", 0, True, -2)


def test_outpaint_keeps_the_box(pipe, boot, tmp_path):
    g = edit(pipe, boot, (8, 8, 24, 24), "outpaint", "bag", 0, 3.0, "raster", 0, workdir=tmp_path)
    assert g.summary.startswith("outpaint: kept 16 of 64 token cells, generated 48 in 8 steps")  # the model's 8


def test_edit_preview_tints_the_cells_to_regenerate(pipe, boot):
    regenerate = np.zeros((8, 8), bool)
    regenerate[0, 0] = True
    picture = edit_preview(pipe, boot[..., None], regenerate)
    assert picture.shape == (128, 128, 3)
    expected = np.round(0.5 * boot[0, 0] + 0.5 * np.array(REGENERATE_TINT, np.float32))
    np.testing.assert_array_equal(picture[0, 0], expected)  # cell (0, 0) = pixels 0..3 -> 0..15 at 4x
    np.testing.assert_array_equal(picture[16:, 16:, 0], np.kron(boot[4:, 4:], np.ones((4, 4), np.uint8)))


def test_fashion_mnist_test_image():
    from lpdgen.data import FashionMNIST

    try:
        images = FashionMNIST(split="test").images.numpy()
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST is not installed ({e})")
    np.testing.assert_array_equal(fashion_mnist_test_image(9999), images[9999])
    with pytest.raises(ValueError, match=r"test image number must be an integer in \[0, 9999\], got 10000"):
        fashion_mnist_test_image(10000)


def test_old_gifs_are_pruned(pipe, tmp_path):
    """A long-running server keeps only the last hour of GIFs in its folder."""

    old, recent = tmp_path / "decode-old.gif", tmp_path / "decode-recent.gif"
    for f in (old, recent):
        f.write_bytes(b"GIF89a")
    stale = time.time() - KEEP_FILES_S - 60
    os.utime(old, (stale, stale))
    g = generate(pipe, "bag", 1, 1, 1.0, "raster", 0, workdir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([recent.name, g.animation.name])
