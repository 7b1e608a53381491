"""`lpdgen demo`: a local web page to generate images and watch LPD decode them (Gradio).

Why a page: a generator is judged by playing with it, and LPD's idea - groups of tokens appearing
where context already is - is easiest to grasp by watching a decoding step by step.

The work of each tab is a plain function of the pipeline (:func:`generate`, :func:`compare`, :func:`edit`) that
validates its inputs with the library's own messages (``ValueError``) and returns numpy pictures, a GIF
path and timings, so it is unit-tested without a browser. :func:`build_app` only lays out widgets and
turns a ``ValueError`` into a ``gr.Error`` (shown on the page, returned to API clients).

Gradio is an optional dependency (``pip install 'lpdgen[demo]'``): nothing here imports it at module
level, so ``import lpdgen.demo`` and every other command work without it.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .animation import CHOSEN, decoding_frames, save_gif
from .classes import short_name
from .data import FASHION_MNIST_DIR, FASHION_MNIST_PAD
from .images import image_grid, upscale
from .orders import ORDER_TYPES
from .rng import image_seeds
from .settings import AUTO_STEPS
from .utils import plural

if TYPE_CHECKING:
    from .pipeline import LPDPipeline
    from .settings import SamplingConfig

INSTALL_HINT = "the demo needs gradio: pip install 'lpdgen[demo]'"
MAX_IMAGES = 64  # per request: bounds the slowest request (its time: README, Try it in the browser)
GRID_COLUMNS = 8
ANIMATION_IMAGES = 4  # the decoding animation shows the first images only (64 rows per frame are unreadable)
ANIMATION_HEIGHT = 400  # pixels on the page
ANIMATION_CAPTION = (
    "Decoding, step by step (first images): the image from the tokens known so far (grey: not "
    "generated yet) beside the cells chosen at that step (orange)."
)
ADAPTIVE_CAPTION = "With adaptive steps it shows the first image only: each image takes steps of its own."
DISPLAY_PIXELS = 128  # small images are upscaled (nearest neighbour) to about this size
DEFAULT_MAX_QUEUE = 16  # requests waiting for the model; more are refused ("queue is full"), not piled up
MODEL_SLOT = "model"  # the concurrency id every event shares: one model, one request at a time
KEEP_FILES_S = 3600  # GIFs (ours and gradio's copies) older than this are deleted: a long-running server stays small


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


def _is_number(value: Any) -> bool:
    """A real number, as a web form or an API client may send it (8, 8.0); not a bool, string or list."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _number(name: str, value: Any) -> float | int:
    """``value`` itself if it is a number (as sent: the library's range messages then quote it as the user
    typed it), else the one-line ``ValueError`` an API client sending text gets."""
    if not _is_number(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return value


def _whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high]; web forms send numbers as floats (8.0), API clients anything."""
    ok = _is_number(value) and math.isfinite(value) and int(value) == value and value >= low
    if not ok or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def _adaptive(value: Any) -> bool:
    """The adaptive-steps checkbox as sent: a bool (an API client may send anything)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"adaptive steps must be true or false, got {value!r}")
    return bool(value)


def _checked_settings(
    pipe: LPDPipeline, steps: int | str | None, guidance: Any, order: Any, entropy_bound: Any
) -> SamplingConfig:
    """A request's settings resolved as the pipeline will resolve them, with its messages and refusals
    (adaptive steps in a fixed order), before any model runs: Compare checks both sides before either
    runs. ``entropy_bound`` counts with ``steps`` = "auto" only (None: the model's own)."""
    guidance = _number("guidance", guidance)  # types here, ranges in the library
    auto = steps == AUTO_STEPS
    bound = _number("entropy bound", entropy_bound) if auto and entropy_bound is not None else None
    return pipe.settings(num_inference_steps=steps, guidance_scale=guidance, order=order, entropy_bound=bound)


@dataclass(frozen=True)
class Request:
    """One validated request: every image of it shows class ``class_id`` with seed ``(seed, i)``;
    ``steps`` "auto" with its ``entropy_bound``: adaptive steps, each image takes its own number."""

    class_id: int
    num_images: int
    steps: int | str
    guidance: float
    order: str
    seed: int
    entropy_bound: float | None = None  # adaptive steps only

    @property
    def seeds(self) -> list[int]:
        return image_seeds(self.seed, range(self.num_images))

    @property
    def adaptive(self) -> bool:
        return self.steps == AUTO_STEPS


def check_request(
    pipe: LPDPipeline,
    label: str | int,
    num_images: float,
    steps: float,
    guidance: float,
    order: str,
    seed: float,
    adaptive: bool = False,
    entropy_bound: float | None = None,
) -> Request:
    """Validate a page's inputs on the server with the library's messages (the ones ``lpdgen sample``
    prints for the same mistake), before the model runs. ``adaptive``: the model decides the steps
    under ``entropy_bound`` (None: the model's own) and ``steps`` is ignored, as the page greys it out.
    Raises ``ValueError``."""
    if label is None or str(label).strip() == "":
        raise ValueError("choose a class")
    (class_id,) = pipe.class_ids([label])
    num = _whole("number of images", num_images, 1, MAX_IMAGES)
    auto = _adaptive(adaptive)
    steps = AUTO_STEPS if auto else _number("steps", steps)
    sampling = _checked_settings(pipe, steps, guidance, order, entropy_bound)
    return Request(
        class_id,
        num,
        steps if auto else int(steps),
        float(sampling.guidance_scale),
        order,
        _whole("seed", seed, 0),
        sampling.entropy_bound if auto else None,
    )


def adaptive_steps_text(num_steps: list[int], entropy_bound: float) -> str:
    """The realised steps of an adaptive request in words: their mean and range over the images."""
    low, high = min(num_steps), max(num_steps)
    if low == high:
        return f"adaptive: {plural(low, 'step')} per image, entropy bound {entropy_bound:g}"
    mean = sum(num_steps) / len(num_steps)
    return f"adaptive: {mean:.1f} steps per image on average ({low}-{high}), entropy bound {entropy_bound:g}"


@dataclass
class Generation:
    """What a tab shows for one request: the pictures, the decoding GIF, timings in words."""

    request: Request | EditRequest
    grid: np.ndarray  # (H, W, 3) uint8 mosaic of every image (an edit: input and result)
    animation: Path  # GIF of the (first images') decoding, step by step
    seconds: float  # generation only (the pipeline call), not the pictures
    summary: str
    order_map: np.ndarray | None = None  # (H, W, 3) uint8 picture of the first image's generation order


def _animation(
    pipe: LPDPipeline, codes, orders, group_sizes: list[int], workdir: Path, prefilled: bool = False
) -> Path:
    """The decoding of ``codes`` (B, h, w) as a GIF in ``workdir`` (a fresh name: requests never collide)."""
    scale = max(2, display_scale(pipe.image_size[0]))
    frames = decoding_frames(
        codes, orders, group_sizes, lambda c: pipe.decode(c, "np"), scale=scale, prefilled=prefilled
    )
    _prune(workdir, KEEP_FILES_S)
    fd, name = tempfile.mkstemp(prefix="decode-", suffix=".gif", dir=workdir)
    os.close(fd)
    save_gif(frames, name)
    return Path(name)


def _prune(workdir: Path, age_s: float) -> None:
    """Delete the GIFs in ``workdir`` older than ``age_s`` (the page has long shown them from gradio's copy)."""
    cutoff = time.time() - age_s
    for old in workdir.glob("decode-*.gif"):
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)


def run_request(pipe: LPDPipeline, request: Request, workdir: Path) -> Generation:
    """Generate a validated request and draw its pictures (GIF written into ``workdir``)."""
    from .orders.draw import draw_order

    r = request
    t0 = time.perf_counter()
    out = pipe(
        [r.class_id] * r.num_images,
        num_inference_steps=r.steps,
        entropy_bound=r.entropy_bound,
        guidance_scale=r.guidance,
        order=r.order,
        seeds=r.seeds,
        output_type="np",
    )
    seconds = time.perf_counter() - t0
    first = out.schedule(0)
    shown = slice(0, 1 if r.adaptive else min(ANIMATION_IMAGES, r.num_images))  # adaptive: schedules differ
    animation = _animation(pipe, out.codes[shown], out.orders[shown], first, workdir)
    how = f"adaptive, {len(first)}" if r.adaptive else f"{r.order} order, {r.steps}"
    title = f"{how} steps: the step of each cell"
    order_map = np.asarray(draw_order(out.orders[0], first, pipe.model.cfg.grid, title=title))
    passes = max(out.num_steps)  # the batch's forward passes: it decodes until its slowest image is done
    if r.adaptive:
        steps = f"{adaptive_steps_text(out.num_steps, r.entropy_bound)}; {passes} forward passes for the batch"
    else:
        steps = f"{r.steps} steps = forward passes"
    summary = (
        f"{r.num_images} image{'s' * (r.num_images > 1)} in {seconds:.2f} s: "
        f"{1e3 * seconds / r.num_images:.1f} ms per image, {1e3 * seconds / passes:.1f} ms "
        f"per step ({steps}, {r.order} order, guidance {r.guidance:g}, seed {r.seed})"
    )
    return Generation(r, grid_picture(out.images), animation, seconds, summary, order_map)


def generate(
    pipe: LPDPipeline,
    label: str | int,
    num_images: float,
    steps: float,
    guidance: float,
    order: str,
    seed: float,
    adaptive: bool = False,
    entropy_bound: float | None = None,
    *,
    workdir: Path,
) -> Generation:
    """The Generate tab: ``num_images`` images of one class, with the decoding animation and order map."""
    request = check_request(pipe, label, num_images, steps, guidance, order, seed, adaptive, entropy_bound)
    return run_request(pipe, request, workdir)


def compare(
    pipe: LPDPipeline,
    label: str | int,
    num_images: float,
    guidance: float,
    seed: float,
    steps_a: float,
    order_a: str,
    steps_b: float,
    order_b: str,
    adaptive_a: bool = False,
    entropy_bound_a: float | None = None,
    adaptive_b: bool = False,
    entropy_bound_b: float | None = None,
    *,
    workdir: Path,
) -> tuple[Generation, Generation]:
    """The Compare tab: the same class and seeds under two settings (step counts, adaptive steps and/or
    orders). Both requests are validated before either runs, so a bad right side costs no generation."""
    a = check_request(pipe, label, num_images, steps_a, guidance, order_a, seed, adaptive_a, entropy_bound_a)
    b = check_request(pipe, label, num_images, steps_b, guidance, order_b, seed, adaptive_b, entropy_bound_b)
    return run_request(pipe, a, workdir), run_request(pipe, b, workdir)


# ---- editing: keep part of an image token for token, regenerate the rest ----------------------------------

EDIT_OPERATIONS = ("inpaint", "outpaint")  # inpaint: regenerate inside the box; outpaint: keep only the box
REGENERATE_TINT = CHOSEN  # the cells to regenerate wear the animation's colour of newly chosen cells


@lru_cache(maxsize=1)
def fashion_mnist_test_images(root: str = FASHION_MNIST_DIR) -> np.ndarray:
    """(10000, 32, 32) uint8: the Fashion-MNIST test split, padded as the embedded model saw its training set."""
    from .data import FashionMNIST

    return FashionMNIST(root, split="test").images.numpy()


def fashion_mnist_test_image(index: float, root: str = FASHION_MNIST_DIR) -> np.ndarray:
    """Test image ``index`` of Fashion-MNIST (32x32 uint8): something to edit without uploading a file."""
    images = fashion_mnist_test_images(root)
    return images[_whole("test image number", index, 0, len(images) - 1)]


@dataclass(frozen=True)
class EditRequest:
    """One validated edit of one image: ``regenerate`` marks the token cells to generate anew."""

    image: np.ndarray  # (H, W, C) uint8 at the model's image size
    operation: str
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels, x1 and y1 exclusive
    regenerate: np.ndarray  # (h, w) bool token cells
    class_id: int
    steps: int | str | None  # None: the model's own, at most the number of cells to regenerate; "auto": adaptive
    guidance: float
    order: str
    seed: int
    entropy_bound: float | None = None  # adaptive steps only

    @property
    def adaptive(self) -> bool:
        return self.steps == AUTO_STEPS


def check_edit(
    pipe: LPDPipeline,
    image: np.ndarray | None,
    box: tuple[float, float, float, float],
    operation: str,
    label: str | int,
    steps: float,
    guidance: float,
    order: str,
    seed: float,
    adaptive: bool = False,
    entropy_bound: float | None = None,
) -> EditRequest:
    """Validate an edit on the server with the library's messages; ``steps`` 0 = the model's own;
    ``adaptive`` as for :func:`check_request`. Raises ``ValueError``."""
    from .editing import box_mask, cell_mask, check_box, image_array

    if image is None:
        raise ValueError("choose a test image or upload one")
    arr = image_array(np.asarray(image)[None], pipe.image_size, pipe.tokenizer.config.image_channels)[0]
    if operation not in EDIT_OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; choose one of {EDIT_OPERATIONS}")
    if len(box) != 4 or not all(_is_number(v) for v in box):
        raise ValueError(f"the box needs four numbers x0 y0 x1 y1, got {tuple(box)!r}")
    box = check_box(box, pipe.image_size)
    inside = box_mask(box, 1, pipe.image_size)
    regenerate = cell_mask(
        inside if operation == "inpaint" else ~inside, 1, pipe.model.cfg.grid, pipe.tokenizer.config.downsample
    )[0].numpy()
    (class_id,) = pipe.class_ids([label])
    cells = int(regenerate.sum())
    if _adaptive(adaptive):
        n = AUTO_STEPS
    else:  # the library's rule: at most one step per cell
        n = (_whole("steps", steps, 0, cells) if cells else 0) or None
    sampling = _checked_settings(pipe, n, guidance, order, entropy_bound)
    return EditRequest(
        arr,
        operation,
        box,
        regenerate,
        class_id,
        n,
        float(sampling.guidance_scale),
        order,
        _whole("seed", seed, 0),
        sampling.entropy_bound if n == AUTO_STEPS else None,
    )


def edit_preview(pipe: LPDPipeline, image: np.ndarray, regenerate: np.ndarray) -> np.ndarray:
    """The image (upscaled, RGB) with the token cells to regenerate tinted: what the box means in cells."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    ds = pipe.tokenizer.config.downsample
    tint = np.repeat(np.repeat(regenerate, ds, 0), ds, 1)  # (h, w) cells -> (H, W) pixels
    out = rgb.astype(np.float32)
    out[tint] = 0.5 * out[tint] + 0.5 * np.array(REGENERATE_TINT, np.float32)
    return upscale(out.round().astype(np.uint8), display_scale(image.shape[0]))


def edit(
    pipe: LPDPipeline,
    image: np.ndarray | None,
    box: tuple[float, float, float, float],
    operation: str,
    label: str | int,
    steps: float,
    guidance: float,
    order: str,
    seed: float,
    adaptive: bool = False,
    entropy_bound: float | None = None,
    *,
    workdir: Path,
) -> Generation:
    """The Edit tab: inpaint (regenerate the box) or outpaint (keep only the box) one image as class
    ``label``. The grid: the input with the cells to regenerate tinted, and the result; the GIF: the
    kept tokens, then each step's new ones."""
    r = check_edit(pipe, image, box, operation, label, steps, guidance, order, seed, adaptive, entropy_bound)
    run = pipe.inpaint if r.operation == "inpaint" else pipe.outpaint
    where = r.regenerate if r.operation == "inpaint" else r.box  # cells for inpaint, the kept box for outpaint
    t0 = time.perf_counter()
    out = run(
        r.image[None],
        where,
        [r.class_id],
        seeds=image_seeds(r.seed, [0]),
        output_type="np",
        num_inference_steps=r.steps,
        entropy_bound=r.entropy_bound,
        guidance_scale=r.guidance,
        order=r.order,
    )
    seconds = time.perf_counter() - t0
    kept = int(out.known.sum())
    schedule = out.schedule(0)
    sizes = [kept, *schedule] if kept else schedule
    animation = _animation(pipe, out.codes, out.orders, sizes, workdir, prefilled=kept > 0)
    pictures = np.stack(
        [
            edit_preview(pipe, r.image, r.regenerate),  # input, cells to regenerate tinted | result
            edit_preview(pipe, out.images[0], np.zeros_like(r.regenerate)),
        ]
    )
    steps = f"adaptive steps (entropy bound {r.entropy_bound:g})" if r.adaptive else "steps"
    summary = (
        f"{r.operation}: kept {kept} of {out.known.numel()} token cells, generated {out.known.numel() - kept} "
        f"in {len(schedule)} {steps} in {seconds:.2f} s ({r.order} order, guidance {r.guidance:g}, seed {r.seed})"
    )
    return Generation(r, image_grid(pictures, columns=2), animation, seconds, summary)


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
    """``fn`` with bad input shown as a one-line ``gr.Error`` (on the page and to API clients). It keeps
    ``fn``'s signature (``functools.wraps``): gradio names the API's parameters after it."""

    @functools.wraps(fn)
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except (ValueError, FileNotFoundError) as e:  # the library's bad-input errors (a missing data set too)
            raise gr.Error(str(e), print_exception=False) from None

    return wrapped


def _on(
    gr: Any, trigger: Callable[..., Any], fn: Callable[..., Any], inputs: list[Any], outputs: Any, **kwargs: Any
) -> None:
    """Wire a model event: raw inputs (``preprocess=False``), so that a wrongly typed value from an API
    client (text for a number) reaches the tab function and gets the library's one-line message; gradio's
    own preprocessing would fail first, with a server traceback and a generic error. The parameters are
    ``fn``'s, in the page's order."""
    trigger(_web(gr, fn), inputs, outputs, preprocess=False, concurrency_id=MODEL_SLOT, concurrency_limit=1, **kwargs)


def _uploaded_image(component: Any, payload: Any) -> np.ndarray | None:
    """An image input received raw (see :func:`_on`) as the numpy array gradio would have passed."""
    if payload is None:
        return None
    try:
        return component.preprocess(component.data_model.model_validate(payload))
    except Exception as e:  # pydantic, PIL and file errors: all mean "not an image we can read"
        raise ValueError(f"the image could not be read ({type(e).__name__})") from None


def _class_input(gr: Any, pipe: LPDPipeline, prefix: str) -> Any:
    choices = class_choices(pipe)
    return gr.Dropdown(
        choices,
        value=choices[0],
        label="class",
        allow_custom_value=True,
        elem_id=f"{prefix}-class",
        info="a name or an id",
    )


def _guidance_and_seed(gr: Any, pipe: LPDPipeline, prefix: str) -> tuple[Any, Any]:
    return (
        gr.Number(pipe.sampling.guidance_scale, label="guidance (1 = none)", elem_id=f"{prefix}-guidance"),
        gr.Number(0, precision=0, label="seed", elem_id=f"{prefix}-seed"),
    )


def _common_inputs(gr: Any, pipe: LPDPipeline, prefix: str) -> tuple[Any, Any, Any, Any]:
    """Class, number of images, guidance and seed widgets (Generate and Compare ask the same questions)."""
    label = _class_input(gr, pipe, prefix)
    num = gr.Slider(1, MAX_IMAGES, value=GRID_COLUMNS, step=1, label="number of images", elem_id=f"{prefix}-num")
    return (label, num, *_guidance_and_seed(gr, pipe, prefix))


def _steps_and_order(gr: Any, pipe: LPDPipeline, prefix: str, steps: int, order: str) -> tuple[Any, Any]:
    n = pipe.model.cfg.num_tokens
    return (
        gr.Slider(
            1, n, value=steps, step=1, label=f"steps (1..{n}; {n} = one token per step)", elem_id=f"{prefix}-steps"
        ),
        gr.Dropdown(list(ORDER_TYPES), value=order, label="order", elem_id=f"{prefix}-order"),
    )


def _adaptive_inputs(gr: Any, pipe: LPDPipeline, prefix: str, steps: Any) -> tuple[Any, Any]:
    """The adaptive-steps checkbox and its entropy bound. Ticking it greys out ``steps`` (ignored then)
    and brings the bound to life; the switch is answered at once, outside the model's queue."""
    adaptive = gr.Checkbox(
        False,
        label="adaptive steps (the model decides)",
        info="each image takes as many steps as its certainty allows; locality order only",
        elem_id=f"{prefix}-adaptive",
    )
    bound = gr.Number(
        pipe.sampling.entropy_bound,
        label="entropy bound (nats; larger = fewer steps)",
        interactive=False,
        elem_id=f"{prefix}-entropy-bound",
    )

    def on_switch(on):
        return gr.update(interactive=not on), gr.update(interactive=on)

    adaptive.change(on_switch, adaptive, [steps, bound], api_visibility="private", queue=False)
    return adaptive, bound


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
            adaptive, bound = _adaptive_inputs(gr, pipe, "generate", steps)
            button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        with gr.Column(scale=3):
            summary, grid = _results(gr, "generate")
            with gr.Row():
                animation = _picture(gr, "generate-animation", type="filepath")
                order_map = _picture(gr, "generate-order", format="png")
            gr.Markdown(
                f"{ANIMATION_CAPTION} {ADAPTIVE_CAPTION} Right: the step at which each cell of the first image "
                "is generated."
            )

    def on_generate(class_label, num_images, guidance, seed, steps, order, adaptive_steps=False, entropy_bound=None):
        g = generate(
            pipe, class_label, num_images, steps, guidance, order, seed, adaptive_steps, entropy_bound, workdir=workdir
        )
        return g.grid, str(g.animation), g.order_map, g.summary

    _on(
        gr,
        button.click,
        on_generate,
        [label, num, guidance, seed, steps, order, adaptive, bound],
        [grid, animation, order_map, summary],
        api_name="generate",
    )


def _compare_tab(gr: Any, pipe: LPDPipeline, workdir: Path) -> None:
    d = pipe.sampling
    with gr.Row():
        label, num, guidance, seed = _common_inputs(gr, pipe, "compare")
    with gr.Row():  # left: the model's own steps; right: one token per step, as a classic autoregressive model
        settings = [
            _steps_and_order(gr, pipe, f"compare-{side}", steps, d.order)
            for side, steps in (("a", d.num_inference_steps), ("b", pipe.model.cfg.num_tokens))
        ]
    with gr.Row():  # below each side's steps: its adaptive switch
        switches = [_adaptive_inputs(gr, pipe, f"compare-{side}", steps) for side, (steps, _) in zip("ab", settings)]
    button = gr.Button("Compare", variant="primary", elem_id="compare-button")
    outputs = []
    with gr.Row():
        for side in "ab":
            with gr.Column():
                summary, grid = _results(gr, f"compare-{side}")
                outputs += [grid, _picture(gr, f"compare-{side}-animation", type="filepath"), summary]
    gr.Markdown(f"{ANIMATION_CAPTION} {ADAPTIVE_CAPTION}")

    def on_compare(
        class_label,
        num_images,
        guidance,
        seed,
        steps_a,
        order_a,
        steps_b,
        order_b,
        adaptive_a=False,
        entropy_bound_a=None,
        adaptive_b=False,
        entropy_bound_b=None,
    ):
        a, b = compare(
            pipe,
            class_label,
            num_images,
            guidance,
            seed,
            steps_a,
            order_a,
            steps_b,
            order_b,
            adaptive_a,
            entropy_bound_a,
            adaptive_b,
            entropy_bound_b,
            workdir=workdir,
        )
        return a.grid, str(a.animation), a.summary, b.grid, str(b.animation), b.summary

    (steps_a, order_a), (steps_b, order_b) = settings
    (adaptive_a, bound_a), (adaptive_b, bound_b) = switches
    _on(
        gr,
        button.click,
        on_compare,
        [label, num, guidance, seed, steps_a, order_a, steps_b, order_b, adaptive_a, bound_a, adaptive_b, bound_b],
        outputs,
        api_name="compare",
    )


def _first_test_image(pipe: LPDPipeline) -> np.ndarray | None:
    """Test image 0 of Fashion-MNIST for the Edit tab to open with (something to edit at once), when the
    model edits such images and the data set is installed; else None (the tab waits for an upload)."""
    if pipe.image_size != (FASHION_MNIST_PAD, FASHION_MNIST_PAD) or pipe.tokenizer.config.image_channels != 1:
        return None
    try:
        return fashion_mnist_test_image(0)
    except FileNotFoundError:
        return None


def _default_box(pipe: LPDPipeline) -> tuple[int, int, int, int]:
    """The Edit tab's opening box (x0, y0, x1, y1): the lower half, where a class edit shows best."""
    height, width = pipe.image_size
    return 0, height // 2, width, height


def _default_region(pipe: LPDPipeline, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image, cells to regenerate) of the Edit tab's opening state: inpaint :func:`_default_box`."""
    r = check_edit(
        pipe, image, _default_box(pipe), "inpaint", 0, 0, pipe.sampling.guidance_scale, pipe.sampling.order, 0
    )
    return r.image, r.regenerate


def _edit_tab(gr: Any, pipe: LPDPipeline, workdir: Path) -> None:
    d = pipe.sampling
    height, width = pipe.image_size
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                index = gr.Number(0, precision=0, label="Fashion-MNIST test image", elem_id="edit-index")
                load = gr.Button("Load", elem_id="edit-load")
            first = _first_test_image(pipe)
            image = gr.Image(
                first,
                label=f"image to edit ({width}x{height}; or upload one)",
                type="numpy",
                image_mode="L" if pipe.tokenizer.config.image_channels == 1 else "RGB",
                sources=["upload", "clipboard"],
                height=ANIMATION_HEIGHT // 2,
                elem_id="edit-image",
            )
            operation = gr.Radio(
                list(EDIT_OPERATIONS),
                value="inpaint",
                label="inpaint: regenerate the box; outpaint: keep only the box",
                elem_id="edit-operation",
            )
            with gr.Row():
                box = [
                    gr.Slider(0, side, value=value, step=1, label=name, elem_id=f"edit-{name}")
                    for name, side, value in zip(("x0", "y0", "x1", "y1"), (width, height) * 2, _default_box(pipe))
                ]
            label = _class_input(gr, pipe, "edit")
            steps = gr.Slider(
                0,
                pipe.model.cfg.num_tokens,
                value=0,
                step=1,
                elem_id="edit-steps",
                label="steps (0 = the model's own, at most one per cell to regenerate)",
            )
            order = gr.Dropdown(list(ORDER_TYPES), value=d.order, label="order", elem_id="edit-order")
            guidance, seed = _guidance_and_seed(gr, pipe, "edit")
            adaptive, bound = _adaptive_inputs(gr, pipe, "edit", steps)
            button = gr.Button("Edit", variant="primary", elem_id="edit-button")
        with gr.Column(scale=3):
            summary, grid = _results(gr, "edit")
            with gr.Row():
                preview = _picture(
                    gr,
                    "edit-preview",
                    format="png",
                    value=None if first is None else edit_preview(pipe, *_default_region(pipe, first)),
                )
                animation = _picture(gr, "edit-animation", type="filepath")
            gr.Markdown(
                "Left: the cells to regenerate (tinted), updated as you move the box: a token cell is "
                "regenerated when the box touches it (inpaint), kept only when the box covers it (outpaint). "
                "Right: " + ANIMATION_CAPTION[0].lower() + ANIMATION_CAPTION[1:] + " The first frame is "
                "what is kept."
            )

    def on_load(index):
        return fashion_mnist_test_image(index)

    def on_preview(image, operation, x0, y0, x1, y1):
        if image is None:
            return None
        r = check_edit(pipe, image, (x0, y0, x1, y1), operation, 0, 0, d.guidance_scale, d.order, 0)
        return edit_preview(pipe, r.image, r.regenerate)

    image_input = image

    def on_edit(
        image,
        operation,
        x0,
        y0,
        x1,
        y1,
        class_label,
        steps,
        order,
        guidance,
        seed,
        adaptive_steps=False,
        entropy_bound=None,
    ):
        g = edit(
            pipe,
            _uploaded_image(image_input, image),
            (x0, y0, x1, y1),
            operation,
            class_label,
            steps,
            guidance,
            order,
            seed,
            adaptive_steps,
            entropy_bound,
            workdir=workdir,
        )
        return g.grid, str(g.animation), g.summary

    load.click(_web(gr, on_load), index, image, api_name="test_image", queue=False)
    region = [image, operation, *box]
    for widget in region:  # no model involved: answered at once, not queued behind generations
        widget.change(_web(gr, on_preview), region, preview, api_visibility="private", queue=False)
    _on(
        gr,
        button.click,
        on_edit,
        [*region, label, steps, order, guidance, seed, adaptive, bound],
        [grid, animation, summary],
        api_name="edit",
    )


def build_app(pipe: LPDPipeline, *, workdir: Path, max_queue: int = DEFAULT_MAX_QUEUE) -> Any:
    """The page (a ``gr.Blocks``), queued: one request runs at a time (one model), at most ``max_queue``
    wait, and every tab's GIFs go to ``workdir``."""
    if max_queue < 1:
        raise ValueError(f"max_queue must be >= 1, got {max_queue}")
    gr = import_gradio()
    d = pipe.sampling
    with gr.Blocks(title="lpdgen demo", analytics_enabled=False, delete_cache=(KEEP_FILES_S // 4, KEEP_FILES_S)) as app:
        gr.Markdown(
            f"## Locality-aware Parallel Decoding\n{pipe.model.cfg.num_tokens} tokens per image, generated "
            f"in groups: each step places a group of tokens next to what is already known and apart from "
            f"each other. The model's own settings: {d.num_inference_steps} steps, guidance "
            f"{d.guidance_scale:g}, {d.order} order; adaptive steps (the model decides, image by image) "
            f"under entropy bound {d.entropy_bound:g}."
        )
        with gr.Tab("Generate"):
            _generate_tab(gr, pipe, workdir)
        with gr.Tab("Compare"):
            _compare_tab(gr, pipe, workdir)
        with gr.Tab("Edit"):
            _edit_tab(gr, pipe, workdir)
    app.queue(default_concurrency_limit=1, max_size=max_queue)
    return app
