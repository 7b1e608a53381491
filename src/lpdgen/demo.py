"""`lpdgen demo`: a local web page to generate images and watch LPD decode them (Gradio).

Why a page: a generator is judged by playing with it, and LPD's idea - groups of tokens appearing
where context already is - is easiest to grasp by watching a decoding step by step.

The work of each tab is a plain function of the pipeline (:func:`generate`, :func:`compare`) that
validates its inputs with the library's own messages (``ValueError``) and returns numpy pictures, a GIF
path and timings, so it is unit-tested without a browser. :func:`build_app` only lays out widgets and
turns a ``ValueError`` into a ``gr.Error`` (shown on the page, returned to API clients).

Gradio is an optional dependency (``pip install 'lpdgen[demo]'``): nothing here imports it at module
level, so ``import lpdgen.demo`` and every other command work without it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .animation import decoding_frames, save_gif
from .classes import short_name
from .images import image_grid, upscale
from .orders import ORDER_TYPES
from .pipeline import check_sampling
from .rng import image_seeds

if TYPE_CHECKING:
    from .pipeline import LPDPipeline, PipelineOutput

INSTALL_HINT = "the demo needs gradio: pip install 'lpdgen[demo]'"
MAX_IMAGES = 64  # per request: one request of the largest size still answers in seconds on a CPU
GRID_COLUMNS = 8
ANIMATION_IMAGES = 4  # the decoding animation shows the first images only (64 rows per frame are unreadable)
ANIMATION_HEIGHT = 400  # pixels on the page
ANIMATION_CAPTION = ("Decoding, step by step (first images): the image from the tokens known so far (grey: not "
                     "generated yet) beside the cells chosen at that step (orange).")
DISPLAY_PIXELS = 128  # small images are upscaled (nearest neighbour) to about this size
DEFAULT_MAX_QUEUE = 16  # requests waiting for the model; more are refused ("queue is full"), not piled up
MODEL_SLOT = "model"  # the concurrency id every event shares: one model, one request at a time


def display_scale(image_size: int) -> int:
    """Nearest-neighbour factor that shows an ``image_size``-pixel image at about :data:`DISPLAY_PIXELS`."""
    return max(1, DISPLAY_PIXELS // image_size)


def grid_picture(images: np.ndarray) -> np.ndarray:
    """(B, H, W, C) uint8 samples -> one upscaled RGB mosaic, at most :data:`GRID_COLUMNS` per row."""
    mosaic = upscale(image_grid(images, columns=min(len(images), GRID_COLUMNS)), display_scale(images.shape[1]))
    return np.repeat(mosaic, 3, axis=-1) if mosaic.shape[-1] == 1 else mosaic


def class_choices(pipe: LPDPipeline) -> list[str]:
    """What the class dropdown offers: the model's class names (short form), or ids when it has none."""
    if pipe.class_names is None:
        return [str(i) for i in range(pipe.model.cfg.num_classes)]
    return [short_name(name) for name in pipe.class_names]


def _whole(name: str, value: float, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high]; web forms send numbers as floats (8.0)."""
    ok = value is not None and math.isfinite(value) and int(value) == value and value >= low
    if not ok or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Request:
    """One validated request: every image of it shows class ``class_id`` with seed ``(seed, i)``."""

    class_id: int
    num_images: int
    steps: int
    guidance: float
    order: str
    seed: int

    @property
    def seeds(self) -> list[int]:
        return image_seeds(self.seed, range(self.num_images))


def check_request(pipe: LPDPipeline, label: str | int, num_images: float, steps: float, guidance: float,
                  order: str, seed: float) -> Request:
    """Validate a page's inputs on the server with the library's messages (the ones ``lpdgen sample``
    prints for the same mistake), before the model runs. Raises ``ValueError``."""
    if label is None or str(label).strip() == "":
        raise ValueError("choose a class")
    (class_id,) = pipe.class_ids([label])
    num = _whole("number of images", num_images, 1, MAX_IMAGES)
    d = pipe.sampling
    if steps is None or guidance is None:
        raise ValueError("steps and guidance need a value")
    check_sampling(steps, guidance, d.cfg_schedule, order, d.temperature, d.top_k, d.top_p, pipe.model.cfg.num_tokens)
    return Request(class_id, num, int(steps), float(guidance), order, _whole("seed", seed, 0))


@dataclass
class Generation:
    """What a tab shows for one request: the grid, the decoding GIF, the first image's order map, timings."""

    request: Request
    grid: np.ndarray  # (H, W, 3) uint8 mosaic of every image
    animation: Path  # GIF of the first images' decoding, step by step
    order_map: np.ndarray  # (H, W, 3) uint8 picture of the first image's generation order
    seconds: float  # generation only (the pipeline call), not the pictures

    @property
    def summary(self) -> str:
        r = self.request
        return (f"{r.num_images} image{'s' * (r.num_images > 1)} in {self.seconds:.2f} s: "
                f"{1e3 * self.seconds / r.num_images:.1f} ms per image, {1e3 * self.seconds / r.steps:.1f} ms "
                f"per step ({r.steps} steps = forward passes, {r.order} order, guidance {r.guidance:g}, seed {r.seed})")


def _pictures(pipe: LPDPipeline, out: PipelineOutput, request: Request, workdir: Path, seconds: float) -> Generation:
    from .orders.draw import draw_order

    scale = max(2, display_scale(out.images.shape[1]))
    shown = slice(0, min(ANIMATION_IMAGES, request.num_images))
    frames = decoding_frames(out.codes[shown], out.orders[shown], out.group_sizes, lambda c: pipe.decode(c, "np"),
                             scale=scale)
    fd, name = tempfile.mkstemp(prefix="decode-", suffix=".gif", dir=workdir)
    os.close(fd)
    save_gif(frames, name)
    title = f"{request.order} order, {request.steps} steps: the step of each cell"
    order_map = np.asarray(draw_order(out.orders[0], out.group_sizes, pipe.model.cfg.grid, title=title))
    return Generation(request, grid_picture(out.images), Path(name), order_map, seconds)


def run_request(pipe: LPDPipeline, request: Request, workdir: Path) -> Generation:
    """Generate a validated request and draw its pictures (GIF written into ``workdir``)."""
    t0 = time.perf_counter()
    out = pipe([request.class_id] * request.num_images, num_inference_steps=request.steps,
               guidance_scale=request.guidance, order=request.order, seeds=request.seeds, output_type="np")
    seconds = time.perf_counter() - t0
    return _pictures(pipe, out, request, workdir, seconds)


def generate(pipe: LPDPipeline, label: str | int, num_images: float, steps: float, guidance: float, order: str,
             seed: float, *, workdir: Path) -> Generation:
    """The Generate tab: ``num_images`` images of one class, with the decoding animation and order map."""
    return run_request(pipe, check_request(pipe, label, num_images, steps, guidance, order, seed), workdir)


def compare(pipe: LPDPipeline, label: str | int, num_images: float, guidance: float, seed: float,
            steps_a: float, order_a: str, steps_b: float, order_b: str, *, workdir: Path) -> tuple[Generation, Generation]:
    """The Compare tab: the same class and seeds under two settings (step counts and/or orders). Both
    requests are validated before either runs, so a bad right side costs no generation."""
    a = check_request(pipe, label, num_images, steps_a, guidance, order_a, seed)
    b = check_request(pipe, label, num_images, steps_b, guidance, order_b, seed)
    return run_request(pipe, a, workdir), run_request(pipe, b, workdir)


# ---- the page ------------------------------------------------------------------------------------------


def import_gradio() -> Any:
    """Import gradio with its usage analytics off (the demo sends nothing anywhere). Raises
    ``ImportError`` carrying :data:`INSTALL_HINT` when it is not installed."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return gradio


def _web(gr: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with bad input shown as a one-line ``gr.Error`` (on the page and to API clients)."""
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except ValueError as e:
            raise gr.Error(str(e), print_exception=False) from None
    wrapped.__name__ = fn.__name__
    return wrapped


def _common_inputs(gr: Any, pipe: LPDPipeline, prefix: str) -> tuple[Any, Any, Any, Any]:
    """Class, number of images, guidance and seed widgets (both tabs ask the same questions)."""
    choices = class_choices(pipe)
    label = gr.Dropdown(choices, value=choices[0], label="class", allow_custom_value=True, elem_id=f"{prefix}-class",
                        info="a name or an id")
    num = gr.Slider(1, MAX_IMAGES, value=GRID_COLUMNS, step=1, label="number of images", elem_id=f"{prefix}-num")
    guidance = gr.Number(pipe.sampling.guidance_scale, label="guidance (1 = none)", elem_id=f"{prefix}-guidance")
    seed = gr.Number(0, precision=0, label="seed", elem_id=f"{prefix}-seed")
    return label, num, guidance, seed


def _steps_and_order(gr: Any, pipe: LPDPipeline, prefix: str, steps: int, order: str) -> tuple[Any, Any]:
    n = pipe.model.cfg.num_tokens
    return (gr.Slider(1, n, value=steps, step=1, label=f"steps (1..{n}; {n} = one token per step)",
                      elem_id=f"{prefix}-steps"),
            gr.Dropdown(list(ORDER_TYPES), value=order, label="order", elem_id=f"{prefix}-order"))


def _results(gr: Any, prefix: str) -> tuple[Any, Any]:
    """The timing line and the grid of images."""
    summary = gr.Textbox(label="time", interactive=False, elem_id=f"{prefix}-summary")
    grid = gr.Image(label="images", format="png", interactive=False, elem_id=f"{prefix}-grid")
    return summary, grid


def _picture(gr: Any, elem_id: str, **kwargs: Any) -> Any:
    """An output picture of fixed height without the label box (it would cover the GIF's step header)."""
    return gr.Image(show_label=False, interactive=False, height=ANIMATION_HEIGHT, elem_id=elem_id, **kwargs)


def _generate_tab(gr: Any, pipe: LPDPipeline, workdir: Path) -> None:
    d = pipe.sampling
    with gr.Row():
        with gr.Column(scale=1):
            label, num, guidance, seed = _common_inputs(gr, pipe, "generate")
            steps, order = _steps_and_order(gr, pipe, "generate", d.num_inference_steps, d.order)
            button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        with gr.Column(scale=3):
            summary, grid = _results(gr, "generate")
            with gr.Row():
                animation = _picture(gr, "generate-animation", type="filepath")
                order_map = _picture(gr, "generate-order", format="png")
            gr.Markdown(ANIMATION_CAPTION + " Right: the step at which each cell of the first image is generated.")

    def on_generate(label, num, steps, guidance, order, seed):
        g = generate(pipe, label, num, steps, guidance, order, seed, workdir=workdir)
        return g.grid, str(g.animation), g.order_map, g.summary

    button.click(_web(gr, on_generate), [label, num, steps, guidance, order, seed],
                 [grid, animation, order_map, summary], api_name="generate", concurrency_id=MODEL_SLOT,
                 concurrency_limit=1)


def _compare_tab(gr: Any, pipe: LPDPipeline, workdir: Path) -> None:
    d = pipe.sampling
    with gr.Row():
        label, num, guidance, seed = _common_inputs(gr, pipe, "compare")
    with gr.Row():  # left: the model's own steps; right: one token per step, as a classic autoregressive model
        settings = [_steps_and_order(gr, pipe, f"compare-{side}", steps, d.order)
                    for side, steps in (("a", d.num_inference_steps), ("b", pipe.model.cfg.num_tokens))]
    button = gr.Button("Compare", variant="primary", elem_id="compare-button")
    outputs = []
    with gr.Row():
        for side in "ab":
            with gr.Column():
                summary, grid = _results(gr, f"compare-{side}")
                outputs += [grid, _picture(gr, f"compare-{side}-animation", type="filepath"), summary]
    gr.Markdown(ANIMATION_CAPTION)

    def on_compare(label, num, guidance, seed, steps_a, order_a, steps_b, order_b):
        a, b = compare(pipe, label, num, guidance, seed, steps_a, order_a, steps_b, order_b, workdir=workdir)
        return a.grid, str(a.animation), a.summary, b.grid, str(b.animation), b.summary

    (steps_a, order_a), (steps_b, order_b) = settings
    button.click(_web(gr, on_compare), [label, num, guidance, seed, steps_a, order_a, steps_b, order_b], outputs,
                 api_name="compare", concurrency_id=MODEL_SLOT, concurrency_limit=1)


def build_app(pipe: LPDPipeline, *, workdir: Path, max_queue: int = DEFAULT_MAX_QUEUE) -> Any:
    """The page (a ``gr.Blocks``), queued: one request runs at a time (one model), at most ``max_queue``
    wait, and every tab's GIFs go to ``workdir``."""
    if max_queue < 1:
        raise ValueError(f"max_queue must be >= 1, got {max_queue}")
    gr = import_gradio()
    d = pipe.sampling
    with gr.Blocks(title="lpdgen demo", analytics_enabled=False) as app:
        gr.Markdown(f"## Locality-aware Parallel Decoding\n{pipe.model.cfg.num_tokens} tokens per image, generated "
                    f"in groups: each step places a group of tokens next to what is already known and apart from "
                    f"each other. The model's own settings: {d.num_inference_steps} steps, guidance "
                    f"{d.guidance_scale:g}, {d.order} order.")
        with gr.Tab("Generate"):
            _generate_tab(gr, pipe, workdir)
        with gr.Tab("Compare"):
            _compare_tab(gr, pipe, workdir)
    app.queue(default_concurrency_limit=1, max_size=max_queue)
    return app

